//! `POST /sign-byoc-job`: the signer signs a BYOC job request for a keyless client (the
//! Python SDK's `livepeer_gateway.byoc`, PROTOCOL.md §10.8). The orchestrator checks the
//! `Livepeer` header's `sig` as `eth_sign(utf8(request ‖ parameters))` by `sender`
//! (go-livepeer byoc `verifyJobCreds`), so that is what is signed, and nothing else.
//!
//! The body is `{id, capability, request, parameters, timeout_seconds}` and the answer
//! `{sender, signature}`. go-livepeer has no such endpoint; the SDK defines it.
//!
//! Only JSON documents are signed: `request` must be a JSON object (the orchestrator parses it
//! as one anyway) and `parameters` empty or a JSON object. The same key signs tickets and
//! segment credentials as `eth_sign` of binary preimages, which always hold NUL bytes (padded
//! integers); a JSON text never does, so this endpoint cannot be made to sign one of them.

use serde_json::{Map, Value};

use super::refusal::Refusal;

/// A parsed `/sign-byoc-job` body: the two strings the signature covers, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSignRequest {
    /// The job's request document, JSON text of an object.
    request: String,
    /// The job's parameters, JSON text of an object, or empty.
    parameters: String,
}

impl JobSignRequest {
    /// Parses and checks a body; each refusal names the offending field.
    pub fn parse(body: &[u8]) -> Result<Self, Refusal> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| invalid("body", format!("body is not JSON: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(invalid("body", "body must be a JSON object".into()));
        };
        let request = required_string(&fields, "request")?;
        json_object("request", &request)?;
        let parameters = match fields.get("parameters") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(invalid("parameters", "parameters must be a string".into())),
        };
        if !parameters.is_empty() {
            json_object("parameters", &parameters)?;
        }
        if required_string(&fields, "capability")?.is_empty() {
            return Err(invalid("capability", "capability must not be empty".into()));
        }
        if let Some(id) = fields.get("id")
            && !id.is_string()
        {
            return Err(invalid("id", "id must be a string".into()));
        }
        if let Some(timeout) = fields.get("timeout_seconds")
            && timeout.as_u64().is_none_or(|t| t == 0)
        {
            // The orchestrator refuses a zero timeout; a job it would refuse is not signed.
            let message = "timeout_seconds must be a positive integer".into();
            return Err(invalid("timeout_seconds", message));
        }
        Ok(Self { request, parameters })
    }

    /// The bytes the orchestrator verifies the signature over: `request ‖ parameters`.
    pub(super) fn message(&self) -> Vec<u8> {
        [self.request.as_bytes(), self.parameters.as_bytes()].concat()
    }
}

fn invalid(field: &'static str, message: String) -> Refusal {
    Refusal::InvalidField { field, message }
}

fn required_string(fields: &Map<String, Value>, name: &'static str) -> Result<String, Refusal> {
    match fields.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(invalid(name, format!("{name} is required"))),
        Some(_) => Err(invalid(name, format!("{name} must be a string"))),
    }
}

/// Refuses `text` unless it is the JSON text of an object.
fn json_object(name: &'static str, text: &str) -> Result<(), Refusal> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(_)) => Ok(()),
        Ok(_) => Err(invalid(name, format!("{name} must be the JSON text of an object"))),
        Err(e) => Err(invalid(name, format!("{name} is not JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<JobSignRequest, Refusal> {
        JobSignRequest::parse(body.to_string().as_bytes())
    }

    fn field_of(body: Value) -> &'static str {
        match parse(body) {
            Err(Refusal::InvalidField { field, .. }) => field,
            other => panic!("expected a field refusal, got {other:?}"),
        }
    }

    fn sdk_body() -> Value {
        json!({
            "id": "job-1",
            "capability": "text-reversal",
            "request": "{\"text\": \"hello\"}",
            "parameters": "",
            "timeout_seconds": 300,
        })
    }

    #[test]
    fn the_message_is_request_then_parameters() {
        let req = parse(sdk_body()).unwrap();
        assert_eq!(req.message(), b"{\"text\": \"hello\"}");
        let mut body = sdk_body();
        body["parameters"] = json!("{\"orchestrators\": {}}");
        let req = parse(body).unwrap();
        assert_eq!(req.message(), b"{\"text\": \"hello\"}{\"orchestrators\": {}}");
        let mut null = sdk_body();
        null["parameters"] = Value::Null;
        assert_eq!(parse(null).unwrap().parameters, "", "null is empty");
        let mut minimal = sdk_body();
        for key in ["id", "parameters", "timeout_seconds"] {
            minimal.as_object_mut().unwrap().remove(key);
        }
        assert!(parse(minimal).is_ok(), "only request and capability are required");
    }

    #[test]
    fn bad_bodies_name_their_field() {
        assert_eq!(field_of(json!([1])), "body");
        assert!(matches!(
            JobSignRequest::parse(b"{not json"),
            Err(Refusal::InvalidField { field: "body", .. })
        ));
        let with = |key: &str, value: Value| {
            let mut body = sdk_body();
            body[key] = value;
            body
        };
        let mut no_request = sdk_body();
        no_request.as_object_mut().unwrap().remove("request");
        assert_eq!(field_of(no_request), "request");
        assert_eq!(field_of(with("request", json!({"text": "x"}))), "request", "not a string");
        assert_eq!(field_of(with("request", json!("[1]"))), "request", "not an object");
        assert_eq!(field_of(with("request", json!("{"))), "request", "not JSON");
        assert_eq!(field_of(with("request", json!("\u{0}"))), "request", "binary");
        assert_eq!(field_of(with("parameters", json!({}))), "parameters");
        assert_eq!(field_of(with("parameters", json!("1"))), "parameters");
        assert_eq!(field_of(with("capability", json!(""))), "capability");
        assert_eq!(field_of(with("capability", json!(37))), "capability");
        assert_eq!(field_of(with("capability", Value::Null)), "capability");
        assert_eq!(field_of(with("id", json!(1))), "id");
        assert_eq!(field_of(with("timeout_seconds", json!(0))), "timeout_seconds");
        assert_eq!(field_of(with("timeout_seconds", json!(-5))), "timeout_seconds");
        assert_eq!(field_of(with("timeout_seconds", json!("300"))), "timeout_seconds");
        assert_eq!(field_of(with("timeout_seconds", json!(1.5))), "timeout_seconds");
    }
}
