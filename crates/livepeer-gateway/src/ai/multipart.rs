//! `multipart/form-data` bodies for the orchestrator's media-input pipelines (RFC 7578).
//!
//! The request is already validated and in memory, so the whole body is built at once; its
//! length is then known and sent as `Content-Length`, as go-livepeer's own client does.

use rand::Rng as _;

use super::validate::Upload;

/// The body of `fields` (in order) followed by the file part, and its `Content-Type` value.
pub fn encode(fields: &[(String, String)], file: &Upload) -> (String, Vec<u8>) {
    // 128 random bits: a collision with the file's bytes is not a practical concern, and
    // scanning a large upload for the boundary would cost more than it protects.
    let boundary = format!("{:032x}", rand::rng().random::<u128>());
    let values: usize = fields.iter().map(|(n, v)| n.len() + v.len() + 100).sum();
    let mut out = Vec::with_capacity(values + file.bytes.len() + 300);
    for (name, value) in fields {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{}\"\r\n\r\n", escape(name)).as_bytes(),
        );
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    out.extend_from_slice(
        format!(
            "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n",
            escape(file.field),
            escape(&file.filename)
        )
        .as_bytes(),
    );
    let content_type = file.content_type.as_deref().unwrap_or("application/octet-stream");
    // A client-supplied type is echoed into a header line: drop it if it could break one.
    let content_type = if content_type.bytes().any(|b| b.is_ascii_control()) {
        "application/octet-stream"
    } else {
        content_type
    };
    out.extend_from_slice(format!("Content-Type: {content_type}\r\n\r\n").as_bytes());
    out.extend_from_slice(&file.bytes);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), out)
}

/// Escapes a name for a quoted header parameter as browsers do (WHATWG HTML, form
/// submission): `"`, CR and LF become percent escapes. So does every other ASCII control
/// character, which no header line may carry: a client's file name can hold them (decoded
/// from a `filename*` parameter), and the orchestrator would refuse the whole body.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '"' || c.is_ascii_control() {
            out.push_str(&format!("%{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn parts_round_trip_through_a_multipart_parser() {
        let file = Upload {
            field: "image",
            filename: "a \"b\"\u{1}\t\r\n.png".into(),
            content_type: Some("image/png".into()),
            bytes: Bytes::from_static(b"\x89PNG\r\n--not-a-boundary\r\n"),
        };
        let fields = vec![("prompt".to_owned(), "a cat\r\non a mat".to_owned())];
        let (ct, body) = encode(&fields, &file);
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap().to_owned();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let parts = rt.block_on(async move {
            let stream =
                futures_util::stream::once(
                    async move { Ok::<_, std::io::Error>(Bytes::from(body)) },
                );
            let mut mp = multer::Multipart::new(stream, boundary);
            let mut parts = Vec::new();
            while let Some(field) = mp.next_field().await.unwrap() {
                let name = field.name().map(str::to_owned);
                let filename = field.file_name().map(str::to_owned);
                let ct = field.content_type().map(|m| m.to_string());
                parts.push((name, filename, ct, field.bytes().await.unwrap()));
            }
            parts
        });
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0.as_deref(), Some("prompt"));
        assert_eq!(&parts[0].3[..], b"a cat\r\non a mat");
        assert_eq!(parts[1].0.as_deref(), Some("image"));
        assert_eq!(parts[1].1.as_deref(), Some("a %22b%22%01%09%0D%0A.png"));
        assert_eq!(parts[1].2.as_deref(), Some("image/png"));
        assert_eq!(parts[1].3, file.bytes);
    }
}
