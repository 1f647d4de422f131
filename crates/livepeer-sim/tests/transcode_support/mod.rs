//! A gateway that transcodes through the simulator as go-livepeer's does, over real sockets:
//! GetOrchestrator with its key, `Livepeer-Segment` signed over the segment, `Livepeer-Payment`
//! with tickets from the answer's params, the raw segment as the body.
#![allow(dead_code, reason = "each test file uses part of it")]

use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_pm::{
    Address, ExpirationParams, LocalSigner, SenderSession, TicketParams, build_payment,
    flatten_segment, keccak256, payment_header_value,
};
use livepeer_proto::Message as _;
use livepeer_proto::net::{self, orchestrator_client::OrchestratorClient};
use livepeer_sim::{Sim, SimConfig};

/// Face value and ticket EV: one ticket in 100 wins.
pub(crate) const FACE: u128 = 100_000_000;
pub(crate) const EV: u128 = 1_000_000;

pub(crate) fn key(byte: u8) -> LocalSigner {
    LocalSigner::from_bytes(&[byte; 32]).unwrap()
}

/// The orchestrator's key.
pub(crate) fn orchestrator_key() -> LocalSigner {
    key(0x42)
}

/// An on-chain simulator with the orchestrator's key, transcoding at `price` wei per pixel.
pub(crate) async fn onchain(fast: bool, price: (i64, i64)) -> Sim {
    Sim::start(config(fast, price)).await.unwrap()
}

pub(crate) fn config(fast: bool, price: (i64, i64)) -> SimConfig {
    SimConfig {
        face_value: FACE,
        ticket_ev: EV,
        base_price: price,
        transcode_fast: fast,
        ..SimConfig::default()
    }
    .with_signer(orchestrator_key())
}

/// A two-second 320×240 30 fps MPEG-TS segment (H.264 and AAC) of ffmpeg's test pattern, made
/// once per test binary. It starts 10 s into its stream ([`SEGMENT_START`]), as a segment past
/// the first one does.
pub(crate) fn test_segment() -> &'static [u8] {
    static SEGMENT: OnceLock<Vec<u8>> = OnceLock::new();
    SEGMENT.get_or_init(|| {
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30:duration=2"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=2"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p"])
            .args(["-c:a", "aac", "-output_ts_offset", "10", "-f", "mpegts", "pipe:1"])
            .output()
            .expect("ffmpeg is installed (scripts/test installs it)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    })
}

/// Where [`test_segment`] starts in its stream, in seconds, as ffprobe reads it (the offset
/// plus the MPEG-TS muxer's 1.4 s delay).
pub(crate) const SEGMENT_START: f64 = 11.4;

/// A profile as a gateway sends it in `fullProfiles3`.
pub(crate) fn profile(name: &str, width: i32, height: i32, fps: u32) -> net::VideoProfile {
    net::VideoProfile {
        name: name.to_owned(),
        width,
        height,
        bitrate: 300_000,
        fps,
        fps_den: 1,
        ..Default::default()
    }
}

/// A gateway with a key and one OrchestratorInfo.
pub(crate) struct Gateway {
    pub(crate) signer: LocalSigner,
    pub(crate) info: net::OrchestratorInfo,
    pub(crate) session: Option<SenderSession>,
    pub(crate) http: reqwest::Client,
}

impl Gateway {
    pub(crate) async fn new(sim: &Sim, signer: LocalSigner) -> Self {
        let address = signer.address();
        let sig = signer.eth_sign(address.to_checksum(None).as_bytes()).unwrap();
        let req = net::OrchestratorRequest {
            address: address.to_vec(),
            sig: sig.0.to_vec(),
            capabilities: None,
            ignore_capacity_check: false,
        };
        let mut client = OrchestratorClient::connect(sim.url().to_owned()).await.unwrap();
        let info = client.get_orchestrator(req).await.unwrap().into_inner();
        let session = info.ticket_params.as_ref().map(|wire| {
            let params = TicketParams::from_proto(wire).unwrap();
            SenderSession::new(params, params.expiration_or(ExpirationParams::default()))
        });
        Self { signer, info, session, http: reqwest::Client::new() }
    }

    pub(crate) fn address(&self) -> Address {
        self.signer.address()
    }

    pub(crate) fn session_id(&self) -> String {
        self.info.auth_token.as_ref().unwrap().session_id.clone()
    }

    /// `Livepeer-Payment` with `n` new tickets (none: sender and price only).
    pub(crate) fn pay(&mut self, n: u32) -> String {
        let price = self.info.price_info.clone().unwrap();
        let session = self.session.as_mut().expect("on-chain params");
        let batch = (n > 0).then(|| session.create_batch(&self.signer, n).unwrap());
        payment_header_value(&build_payment(self.signer.address(), &price, batch.as_ref()).unwrap())
    }

    /// `Livepeer-Segment` for `data` as segment `seq` of 2 s with `profiles`, signed.
    pub(crate) fn segment(&self, seq: i64, data: &[u8], profiles: &[net::VideoProfile]) -> String {
        let hash = keccak256(data);
        let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        let manifest = "manifest-1";
        let flat = flatten_segment(manifest, seq as u64, &hash, &names);
        let seg = net::SegData {
            manifest_id: manifest.as_bytes().to_vec(),
            seq,
            hash: hash.to_vec(),
            profiles: b"invalid".to_vec(),
            sig: self.signer.eth_sign(&flat).unwrap().0.to_vec(),
            duration: 2000,
            capabilities: Some(segment_caps()),
            auth_token: self.info.auth_token.clone(),
            full_profiles3: profiles.to_vec(),
            ..Default::default()
        };
        STANDARD.encode(seg.encode_to_vec())
    }

    /// `POST {transcoder}/segment` with these header values and body.
    pub(crate) async fn post(
        &self,
        payment: &str,
        segment: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/segment", self.info.transcoder))
            .header("Livepeer-Payment", payment)
            .header("Livepeer-Segment", segment)
            .header("Content-Type", "video/MP2T")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Pays `tickets` and posts `data` as segment `seq`; the status and the body.
    pub(crate) async fn transcode(
        &mut self,
        seq: i64,
        data: &[u8],
        profiles: &[net::VideoProfile],
        tickets: u32,
    ) -> (u16, Vec<u8>) {
        let payment = self.pay(tickets);
        let segment = self.segment(seq, data, profiles);
        let resp = self.post(&payment, &segment, data.to_vec()).await;
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    }
}

/// The capabilities go-livepeer's gateway sends for an H.264 MPEG-TS job: auth token, H.264,
/// MPEG-TS.
pub(crate) fn segment_caps() -> net::Capabilities {
    let mut word = 0u64;
    for id in [0, 1, 12] {
        word |= 1 << id;
    }
    net::Capabilities { bitstring: vec![word], ..Default::default() }
}

/// A 200 answer's `TranscodeResult`.
pub(crate) fn decode(body: &[u8]) -> net::TranscodeResult {
    net::TranscodeResult::decode(body).expect("a protobuf TranscodeResult")
}

/// The start time of a media file in seconds, by ffprobe.
pub(crate) fn start_time(data: &[u8]) -> f64 {
    let text = ffprobe(data, &["-show_entries", "format=start_time", "-of", "csv=p=0"]);
    text.trim().parse().unwrap()
}

/// The width, height and frame count of a media file, by ffprobe.
pub(crate) fn probe(data: &[u8]) -> (u32, u32, u64) {
    let args = ["-select_streams", "v:0", "-count_frames", "-show_entries"];
    let text = ffprobe(
        data,
        &[&args[..], &["stream=width,height,nb_read_frames", "-of", "csv=p=0"]].concat(),
    );
    // MPEG-TS lists the stream under its program too: the first line is enough.
    let line = text.lines().find(|l| !l.trim().is_empty()).expect("a video stream");
    let fields: Vec<u64> = line.trim().split(',').map(|f| f.parse().unwrap()).collect();
    (fields[0] as u32, fields[1] as u32, fields[2])
}

/// ffprobe's output for `data` with `args`.
fn ffprobe(data: &[u8], args: &[&str]) -> String {
    let path = std::env::temp_dir().join(format!("sim-probe-{:016x}", rand_name(data)));
    std::fs::write(&path, data).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(&path)
        .output()
        .expect("ffprobe is installed");
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rand_name(data: &[u8]) -> u64 {
    let h = keccak256(data);
    u64::from_be_bytes(h[..8].try_into().unwrap()) ^ u64::from(std::process::id())
}
