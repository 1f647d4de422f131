//! Tests of request validation and pricing units, for every pipeline.

use super::super::probe::samples::{fixture, gif, jpeg, png, wav};
use super::*;
use serde_json::json;

async fn check(p: Pipeline, input: Input) -> Result<ValidRequest, Vec<FieldError>> {
    validate(p, input, &Limits::default()).await
}

fn body(v: Value) -> Input {
    Input::Json(Bytes::from(v.to_string()))
}

/// A multipart body: the file part (if any) first, then text parts.
fn form(file: Option<(&str, Vec<u8>)>, fields: &[(&str, &str)]) -> Input {
    let text = |(name, value): &(&str, &str)| FormPart {
        name: (*name).to_owned(),
        filename: None,
        content_type: None,
        bytes: Bytes::from(value.to_string()),
    };
    let file = file.map(|(name, bytes)| FormPart {
        name: name.to_owned(),
        filename: Some("upload.bin".to_owned()),
        content_type: Some("application/octet-stream".to_owned()),
        bytes: bytes.into(),
    });
    Input::Multipart(file.into_iter().chain(fields.iter().map(text)).collect())
}

/// `(dotted loc, type)` of each error, in order.
fn kinds(errors: &[FieldError]) -> Vec<(String, String)> {
    errors.iter().map(|e| (e.loc.join("."), e.kind.clone())).collect()
}

fn want(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(l, k)| ((*l).to_owned(), (*k).to_owned())).collect()
}

fn json_payload(r: &ValidRequest) -> Value {
    match &r.payload {
        // What is forwarded, as JSON.
        Payload::Json(body) => serde_json::to_value(body).unwrap(),
        other => panic!("expected JSON, got {other:?}"),
    }
}

fn form_payload(r: &ValidRequest) -> (Vec<(&str, &str)>, &Upload) {
    match &r.payload {
        Payload::Multipart { fields, file } => {
            (fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(), file)
        }
        other => panic!("expected multipart, got {other:?}"),
    }
}

#[test]
fn pipeline_tables() {
    for p in Pipeline::ALL {
        assert_eq!(Pipeline::from_name(p.name()), Some(p));
        assert!(!p.default_model().is_empty());
    }
    let caps: Vec<u32> = Pipeline::ALL.iter().map(|p| p.capability()).collect();
    assert_eq!(caps, [27, 28, 29, 30, 31, 32, 33, 34, 36]);
    assert_eq!(Pipeline::from_name("/llm"), None);
    assert_eq!(Pipeline::Llm.file_field(), None);
    assert_eq!(Pipeline::AudioToText.file_field(), Some("audio"));
    assert_eq!(Pipeline::Upscale.file_field(), Some("image"));
}

#[tokio::test]
async fn text_to_image_fills_spec_defaults() {
    let r =
        check(Pipeline::TextToImage, body(json!({"prompt": "a cat", "junk": 1}))).await.unwrap();
    assert_eq!(
        (r.model.as_str(), r.units, r.stream),
        ("stabilityai/sdxl-turbo", 576 * 1024, false)
    );
    let expected = json!({"prompt": "a cat", "model_id": "stabilityai/sdxl-turbo", "height": 576,
        "width": 1024, "num_images_per_prompt": 1});
    assert_eq!(json_payload(&r), expected);

    let v = json!({"prompt": "x", "model_id": "m/x", "height": 512, "width": 768.0,
        "num_images_per_prompt": 2, "guidance_scale": 2, "seed": null});
    let r = check(Pipeline::TextToImage, body(v)).await.unwrap();
    assert_eq!((r.model.as_str(), r.units), ("m/x", 512 * 768 * 2));
    let p = json_payload(&r);
    assert_eq!(
        (&p["width"], &p["guidance_scale"], p.get("seed")),
        (&json!(768), &json!(2.0), None)
    );
}

#[tokio::test]
async fn text_to_image_collects_every_error() {
    let v = json!({"height": "big", "width": 100, "num_images_per_prompt": 0, "guidance_scale": -1,
        "safety_check": "yes", "seed": 1.5, "num_inference_steps": 5000, "model_id": 3});
    let errors = check(Pipeline::TextToImage, body(v)).await.unwrap_err();
    let expected = [
        ("body.model_id", "string_type"),
        ("body.prompt", "missing"),
        ("body.height", "int_type"),
        ("body.width", "multiple_of"),
        ("body.guidance_scale", "greater_than_equal"),
        ("body.safety_check", "bool_type"),
        ("body.seed", "int_from_float"),
        ("body.num_inference_steps", "less_than_equal"),
        ("body.num_images_per_prompt", "greater_than_equal"),
    ];
    assert_eq!(kinds(&errors), want(&expected));
    assert_eq!(errors[1].msg, "Field required");
    assert_eq!(errors[8].msg, "Input should be greater than or equal to 1");
}

#[tokio::test]
async fn body_shape_errors() {
    let raw = |s: &'static str| Input::Json(Bytes::from_static(s.as_bytes()));
    let t2i = Pipeline::TextToImage;
    assert_eq!(
        kinds(&check(t2i, raw("{\"prompt\":")).await.unwrap_err()),
        want(&[("body", "json_invalid")])
    );
    assert_eq!(
        kinds(&check(t2i, raw("[1]")).await.unwrap_err()),
        want(&[("body", "model_attributes_type")])
    );
    assert_eq!(kinds(&check(t2i, raw(" ")).await.unwrap_err()), want(&[("body", "missing")]));
    let wrong = check(t2i, form(None, &[("prompt", "x")])).await.unwrap_err();
    assert_eq!(kinds(&wrong), want(&[("body", "value_error")]));
    let wrong = check(Pipeline::ImageToImage, body(json!({"prompt": "x"}))).await.unwrap_err();
    assert_eq!(kinds(&wrong), want(&[("body", "value_error")]));
    assert!(wrong[0].msg.contains("`image`"), "{}", wrong[0].msg);
}

#[tokio::test]
async fn image_to_image_prices_input_pixels_and_formats_like_go() {
    let fields = [
        ("prompt", "p"),
        ("strength", "0.5"),
        ("safety_check", "0"),
        ("seed", " 42 "),
        ("num_images_per_prompt", "3"),
        ("bogus", "x"),
        ("prompt", "second value ignored"),
    ];
    let r =
        check(Pipeline::ImageToImage, form(Some(("image", png(64, 32))), &fields)).await.unwrap();
    assert_eq!((r.model.as_str(), r.units), ("stabilityai/sdxl-turbo", 64 * 32 * 3));
    let (fields, file) = form_payload(&r);
    let expected = [
        ("prompt", "p"),
        ("model_id", "stabilityai/sdxl-turbo"),
        ("strength", "0.500000"),
        ("safety_check", "false"),
        ("seed", "42"),
        ("num_images_per_prompt", "3"),
    ];
    assert_eq!(fields, expected);
    assert_eq!((file.field, file.filename.as_str(), file.bytes.len()), ("image", "upload.bin", 33));

    // No count given: one image, and it is forwarded explicitly.
    let r = check(Pipeline::ImageToImage, form(Some(("image", png(10, 10))), &[("prompt", "p")]))
        .await
        .unwrap();
    assert_eq!(r.units, 100);
    assert!(form_payload(&r).0.contains(&("num_images_per_prompt", "1")));

    let errors = check(Pipeline::ImageToImage, form(None, &[("prompt", "")])).await.unwrap_err();
    assert_eq!(kinds(&errors), want(&[("body.image", "missing"), ("body.prompt", "missing")]));
}

#[tokio::test]
async fn image_to_video_upscale_segment_and_caption() {
    let jpg = || Some(("image", jpeg(1024, 576)));
    let r = check(Pipeline::ImageToVideo, form(jpg(), &[])).await.unwrap();
    assert_eq!(r.units, 576 * 1024 * 25);
    let expected = [
        ("model_id", "stabilityai/stable-video-diffusion-img2vid-xt"),
        ("height", "576"),
        ("width", "1024"),
    ];
    assert_eq!(form_payload(&r).0, expected);
    let r = check(Pipeline::ImageToVideo, form(jpg(), &[("height", "320"), ("width", "512")]))
        .await
        .unwrap();
    assert_eq!(r.units, 320 * 512 * 25);

    let r = check(Pipeline::Upscale, form(Some(("image", gif(100, 50))), &[("prompt", "x")]))
        .await
        .unwrap();
    assert_eq!((r.units, r.model.as_str()), (5000, "stabilityai/stable-diffusion-x4-upscaler"));
    let errors = check(Pipeline::Upscale, form(Some(("image", gif(1, 1))), &[])).await.unwrap_err();
    assert_eq!(kinds(&errors), want(&[("body.prompt", "missing")]));

    let sam = [("point_coords", "[[1,2]]"), ("multimask_output", "off"), ("model_id", "")];
    let r =
        check(Pipeline::SegmentAnything2, form(Some(("image", png(10, 20))), &sam)).await.unwrap();
    assert_eq!(r.units, 200);
    let expected = [
        ("model_id", "facebook/sam2-hiera-large"),
        ("point_coords", "[[1,2]]"),
        ("multimask_output", "false"),
    ];
    assert_eq!(form_payload(&r).0, expected);

    let r = check(Pipeline::ImageToText, form(Some(("image", png(7, 3))), &[])).await.unwrap();
    assert_eq!((r.units, r.model.as_str()), (21, "Salesforce/blip-image-captioning-large"));
}

#[tokio::test]
async fn multipart_text_parsing_errors() {
    let fields = [
        ("fps", "abc"),
        ("noise_aug_strength", "x"),
        ("safety_check", "maybe"),
        ("motion_bucket_id", "-1"),
        ("height", "nan"),
        ("width", "1e3"),
    ];
    let mut input = form(Some(("image", png(8, 8))), &fields);
    if let Input::Multipart(parts) = &mut input {
        parts.push(FormPart {
            name: "seed".into(),
            filename: None,
            content_type: None,
            bytes: Bytes::from_static(&[0xFF, 0xFE]),
        });
    }
    let errors = check(Pipeline::ImageToVideo, input).await.unwrap_err();
    let expected = [
        ("body.height", "int_parsing"),
        ("body.width", "int_parsing"),
        ("body.fps", "int_parsing"),
        ("body.motion_bucket_id", "greater_than_equal"),
        ("body.noise_aug_strength", "float_parsing"),
        ("body.safety_check", "bool_parsing"),
        ("body.seed", "string_unicode"),
    ];
    assert_eq!(kinds(&errors), want(&expected));
    let inf = check(
        Pipeline::ImageToVideo,
        form(Some(("image", png(8, 8))), &[("noise_aug_strength", "inf")]),
    );
    assert_eq!(
        kinds(&inf.await.unwrap_err()),
        want(&[("body.noise_aug_strength", "finite_number")])
    );
}

#[tokio::test]
async fn unusable_uploads() {
    let bmp = [b"BM".as_slice(), &[0; 60]].concat();
    for bytes in [bmp, b"just some text".to_vec(), Vec::new(), png(0, 5)] {
        let errors =
            check(Pipeline::ImageToText, form(Some(("image", bytes)), &[])).await.unwrap_err();
        assert_eq!(kinds(&errors), want(&[("body.image", "value_error")]));
    }
    let errors = check(Pipeline::ImageToText, form(Some(("image", b"BM".repeat(30))), &[]))
        .await
        .unwrap_err();
    assert!(errors[0].msg.contains("PNG, JPEG or GIF"), "{}", errors[0].msg);

    let small = Limits { max_image_pixels: 100, ..Limits::default() };
    let big = form(Some(("image", png(20, 20))), &[("model_id", &"m".repeat(300))]);
    let errors = validate(Pipeline::ImageToText, big, &small).await.unwrap_err();
    assert_eq!(
        kinds(&errors),
        want(&[("body.image", "value_error"), ("body.model_id", "string_too_long")])
    );
    assert!(errors[0].msg.contains("400 pixels"), "{}", errors[0].msg);

    // A file part sent without a file name is still the file, and is forwarded with one.
    let input = Input::Multipart(vec![FormPart {
        name: "image".into(),
        filename: None,
        content_type: None,
        bytes: png(2, 2).into(),
    }]);
    let r = check(Pipeline::ImageToText, input).await.unwrap();
    assert_eq!(form_payload(&r).1.filename, "image");
}

#[tokio::test]
async fn llm_defaults_stream_and_units() {
    let v =
        json!({"messages": [{"role": "user", "content": "hi", "name": "dropped"}], "top_k": 40});
    let r = check(Pipeline::Llm, body(v)).await.unwrap();
    assert_eq!(
        (r.model.as_str(), r.units, r.stream),
        ("meta-llama/llama-3.1-8B-Instruct", 256, false)
    );
    let expected = json!({"messages": [{"role": "user", "content": "hi"}],
        "model": "meta-llama/llama-3.1-8B-Instruct", "max_tokens": 256, "top_k": 40, "stream": false});
    assert_eq!(json_payload(&r), expected);

    let v = json!({"messages": [{"role": "user", "content": "hi"}], "model": "m", "max_tokens": 10,
        "stream": true, "temperature": 0});
    let r = check(Pipeline::Llm, body(v)).await.unwrap();
    assert_eq!((r.model.as_str(), r.units, r.stream), ("m", 10, true));
}

#[tokio::test]
async fn llm_errors() {
    let loc = |v: Value| async move { kinds(&check(Pipeline::Llm, body(v)).await.unwrap_err()) };
    assert_eq!(loc(json!({})).await, want(&[("body.messages", "missing")]));
    assert_eq!(loc(json!({"messages": []})).await, want(&[("body.messages", "too_short")]));
    assert_eq!(loc(json!({"messages": "hi"})).await, want(&[("body.messages", "list_type")]));
    let v = json!({"messages": [{"role": 1}, 5], "temperature": 3, "max_tokens": 0, "top_p": -0.1,
        "top_k": -2, "stream": "yes"});
    let expected = [
        ("body.messages.0.role", "string_type"),
        ("body.messages.0.content", "missing"),
        ("body.messages.1", "model_type"),
        ("body.temperature", "less_than_equal"),
        ("body.max_tokens", "greater_than_equal"),
        ("body.top_p", "greater_than_equal"),
        ("body.top_k", "greater_than_equal"),
        ("body.stream", "bool_type"),
    ];
    assert_eq!(loc(v).await, want(&expected));
}

/// One bad message per three bytes of body: the errors gathered, and those answered, stay
/// bounded (a 2 MB body of them made a 172 MB answer and took 1.9 GB). A million of them are
/// more values than a body may hold; fifty thousand are not.
#[tokio::test]
async fn a_million_bad_messages_give_a_bounded_answer() {
    let v = json!({"messages": vec![json!({}); 1_000_000]});
    let errors = check(Pipeline::Llm, body(v)).await.unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].msg.contains("more than 100000 JSON values"), "{errors:?}");
    let v = json!({"messages": vec![json!({}); 50_000]});
    let errors = check(Pipeline::Llm, body(v)).await.unwrap_err();
    assert!(errors.len() <= crate::error::MAX_FIELD_ERRORS + 2, "{} errors", errors.len());
    let answer = crate::error::Error::validation(errors);
    assert_eq!(answer.field_errors().len(), crate::error::MAX_FIELD_ERRORS + 1);
    let last = answer.field_errors().last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.msg.as_str()),
        ("too_many_errors", "more errors, not listed (at most 32 are)")
    );
    assert!(answer.message().len() < 4096, "{}", answer.message().len());
}

#[tokio::test]
async fn text_to_speech_counts_characters() {
    let r = check(Pipeline::TextToSpeech, body(json!({"text": "héllo wörld"}))).await.unwrap();
    assert_eq!((r.units, r.model.as_str()), (11_000, "parler-tts/parler-tts-large-v1"));
    assert_eq!(
        json_payload(&r),
        json!({"model_id": "parler-tts/parler-tts-large-v1", "text": "héllo wörld"})
    );
    let errors =
        check(Pipeline::TextToSpeech, body(json!({"description": "calm"}))).await.unwrap_err();
    assert_eq!(kinds(&errors), want(&[("body.text", "missing")]));
    let errors = check(Pipeline::TextToSpeech, body(json!({"text": ""}))).await.unwrap_err();
    assert_eq!(kinds(&errors), want(&[("body.text", "string_too_short")]));
    let short = Limits { max_prompt_chars: 3, ..Limits::default() };
    let errors =
        validate(Pipeline::TextToSpeech, body(json!({"text": "ééééé"})), &short).await.unwrap_err();
    assert_eq!(
        (errors[0].kind.as_str(), errors[0].msg.as_str()),
        ("string_too_long", "String should have at most 3 characters")
    );
}

#[tokio::test]
async fn units_saturate() {
    let huge = Limits {
        max_output_dimension: u32::MAX,
        max_images_per_prompt: u32::MAX,
        ..Limits::default()
    };
    let v = json!({"prompt": "x", "height": 1u64 << 31, "width": 1u64 << 31, "num_images_per_prompt": u32::MAX});
    let r = validate(Pipeline::TextToImage, body(v), &huge).await.unwrap();
    assert_eq!(r.units, u64::MAX);
}

#[tokio::test]
async fn audio_to_text_errors_before_probing() {
    let errors = check(Pipeline::AudioToText, form(None, &[])).await.unwrap_err();
    assert_eq!(kinds(&errors), want(&[("body.audio", "missing")]));
    // Other errors are reported without probing (here the audio is not even audio).
    let input = form(Some(("audio", b"junk".to_vec())), &[("model_id", &"m".repeat(300))]);
    let errors = check(Pipeline::AudioToText, input).await.unwrap_err();
    assert_eq!(kinds(&errors), want(&[("body.model_id", "string_too_long")]));
}

/// When the probe cannot run (its slots closed at shutdown), the upload was not found at fault:
/// the answer is the gateway's 503, not the client's 422.
#[tokio::test]
async fn an_audio_probe_that_cannot_run_is_the_gateway_s_fault() {
    let limits = Limits::default();
    limits.probe_slots.close();
    let input = form(Some(("audio", wav(8000, 12_000))), &[]);
    let errors = validate(Pipeline::AudioToText, input, &limits).await.unwrap_err();
    let answer = rejection(errors);
    assert_eq!(answer.kind(), crate::error::Kind::GatewayOverloaded);
    assert_eq!(answer.retry_after_secs(), Some(1));
    // A client's own error still gets the 422 of the fields.
    let errors = check(Pipeline::AudioToText, form(None, &[])).await.unwrap_err();
    assert_eq!(rejection(errors).kind(), crate::error::Kind::Validation);
}

/// An upload queued behind other probes holding every slot gives up after its wait, the
/// gateway's 503, rather than wait past its request's deadline.
#[tokio::test(start_paused = true)]
async fn an_audio_probe_waits_for_a_slot_within_a_bound() {
    let limits = Limits::default();
    let slots = limits.probe_slots.clone();
    let n = slots.available_permits() as u32;
    let _all = slots.acquire_many_owned(n).await.unwrap();
    let input = form(Some(("audio", wav(8000, 12_000))), &[]);
    let errors = validate(Pipeline::AudioToText, input, &limits).await.unwrap_err();
    assert_eq!(rejection(errors).kind(), crate::error::Kind::GatewayOverloaded);
}

#[tokio::test]
async fn audio_to_text_bills_whole_seconds() {
    // 1.5 s at 8 kHz: billed as 1 whole second.
    let input = form(Some(("audio", wav(8000, 12_000))), &[("return_timestamps", "word")]);
    let r = check(Pipeline::AudioToText, input).await.unwrap();
    assert_eq!((r.units, r.model.as_str()), (1000, "openai/whisper-large-v3"));
    let expected = [
        ("model_id", "openai/whisper-large-v3"),
        ("return_timestamps", "word"),
        ("metadata", r#"{"duration":"1"}"#),
    ];
    assert_eq!(form_payload(&r).0, expected);

    // A WebM/Opus upload: measured from its container, with no Opus decoder.
    let input = form(Some(("audio", fixture("tone-3.5s.webm"))), &[]);
    let r = check(Pipeline::AudioToText, input).await.unwrap();
    assert_eq!(r.units, 3000);

    // A WebM whose TimestampScale is 0: symphonia's demuxer panics on it, the probe catches
    // that, and the upload gets the client's error like any unreadable file.
    let mut zero_scale = fixture("tone-3.5s.webm");
    let at = zero_scale.windows(4).position(|w| w == [0x2A, 0xD7, 0xB1, 0x83]).unwrap() + 4;
    zero_scale[at..at + 3].fill(0);

    for bad in [wav(8000, 4000), b"definitely not audio".to_vec(), zero_scale] {
        let errors =
            check(Pipeline::AudioToText, form(Some(("audio", bad)), &[])).await.unwrap_err();
        assert_eq!(kinds(&errors), want(&[("body.audio", "value_error")]));
        assert!(errors[0].msg.starts_with("Unable to calculate duration"), "{}", errors[0].msg);
    }
}
