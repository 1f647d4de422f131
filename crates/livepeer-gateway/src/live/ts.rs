//! Counting video frames in an MPEG-TS byte stream, for the frame rates of `/status`.
//!
//! Each video frame starts a new PES packet, which starts a TS packet with the
//! payload-unit-start flag set and a payload beginning `00 00 01` followed by a video stream id
//! (0xE0–0xEF). Counting those needs neither the PAT nor the PMT, and works on chunks cut at
//! any byte (a partial packet is carried over to the next chunk).

/// Size of one transport stream packet.
const PACKET: usize = 188;
/// First byte of every packet.
const SYNC: u8 = 0x47;

/// Counts video frames across the chunks of one segment.
#[derive(Debug, Default)]
pub struct FrameCounter {
    carry: Vec<u8>,
    frames: u64,
}

impl FrameCounter {
    /// Feeds the next bytes.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        if !self.carry.is_empty() {
            let need = PACKET - self.carry.len();
            let take = need.min(chunk.len());
            self.carry.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.carry.len() < PACKET {
                return;
            }
            let packet = std::mem::take(&mut self.carry);
            self.count(&packet);
        }
        let mut packets = chunk.chunks_exact(PACKET);
        for packet in &mut packets {
            self.count(packet);
        }
        self.carry.extend_from_slice(packets.remainder());
    }

    /// Frames counted so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    fn count(&mut self, p: &[u8]) {
        if p.len() != PACKET || p[0] != SYNC || p[1] & 0x40 == 0 {
            return;
        }
        // Adaptation field control: 2 = adaptation only, 3 = adaptation then payload.
        let start = match (p[3] >> 4) & 0x3 {
            1 => 4,
            3 => 5 + usize::from(p[4]),
            _ => return,
        };
        if let Some(pes) = p.get(start..start + 4)
            && pes[..3] == [0, 0, 1]
            && (0xE0..=0xEF).contains(&pes[3])
        {
            self.frames += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pusi: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![SYNC, if pusi { 0x40 } else { 0 }, 0x41, 0x10];
        p.extend_from_slice(payload);
        p.resize(PACKET, 0xff);
        p
    }

    #[test]
    fn counts_video_pes_starts_across_any_chunking() {
        let mut stream = Vec::new();
        for _ in 0..5 {
            stream.extend(packet(true, &[0, 0, 1, 0xE0]));
            stream.extend(packet(false, &[1, 2, 3]));
            // Audio PES start: not a frame.
            stream.extend(packet(true, &[0, 0, 1, 0xC0]));
        }
        for size in [1, 7, 188, 200, 1000, stream.len()] {
            let mut counter = FrameCounter::default();
            for chunk in stream.chunks(size) {
                counter.feed(chunk);
            }
            assert_eq!(counter.frames(), 5, "chunk size {size}");
        }
    }
}
