//! The request schemas as a table (one line per group of fields, in the spec's order), and how
//! one scalar value is read from JSON or a form field and checked against its bounds. The
//! caller locates each fault (`loc`) and gathers them into field errors.

use serde_json::{Number, Value};

use super::{Limits, Pipeline};

/// Diffusion schedulers are trained on 1000 timesteps; more steps than that are meaningless.
const MAX_STEPS: f64 = 1000.0;
/// Hugging Face ids are far shorter; this only stops abuse. Orchestrators' longer ids are not
/// kept either (`orchestrator::caps`).
const MAX_MODEL_CHARS: f64 = crate::orchestrator::caps::MAX_MODEL_CHARS as f64;
/// Latent diffusion models (SDXL, SVD) need sizes divisible by their VAE factor, 8; anything else
/// fails in the runner after the gateway has paid.
const SIZE_MULTIPLE: i64 = 8;

/// A schema type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Ty {
    Str,
    Int,
    Num,
    Bool,
}

/// One scalar field of a request schema.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spec {
    pub(super) name: &'static str,
    pub(super) ty: Ty,
    pub(super) required: bool,
    /// Inclusive bounds: the value for numbers, the length in characters for strings.
    min: Option<f64>,
    max: Option<f64>,
    multiple_of: Option<i64>,
}

impl Spec {
    fn new(name: &'static str, ty: Ty) -> Self {
        Self { name, ty, required: false, min: None, max: None, multiple_of: None }
    }
    fn required(self) -> Self {
        Self { required: true, ..self }
    }
    fn min(self, min: f64) -> Self {
        Self { min: Some(min), ..self }
    }
    fn max(self, max: f64) -> Self {
        Self { max: Some(max), ..self }
    }
}

/// The scalar fields of each request schema, in spec order (which is also the forwarding order).
/// LLM `messages` and the file parts are handled apart.
#[rustfmt::skip] // a table: one line per group of fields reads better than one per field
pub(super) fn schema(p: Pipeline, l: &Limits) -> Vec<Spec> {
    use Pipeline::*;
    let (int, num, boolean) = (|n| Spec::new(n, Ty::Int), |n| Spec::new(n, Ty::Num), |n| Spec::new(n, Ty::Bool));
    let text = |n| Spec::new(n, Ty::Str).max(l.max_prompt_chars as f64);
    let model = Spec::new(p.model_field(), Ty::Str).max(MAX_MODEL_CHARS);
    let size = |n| Spec {
        multiple_of: Some(SIZE_MULTIPLE),
        ..int(n).min(1.0).max(f64::from(l.max_output_dimension))
    };
    let images = int("num_images_per_prompt").min(1.0).max(f64::from(l.max_images_per_prompt));
    let steps = int("num_inference_steps").min(1.0).max(MAX_STEPS);
    let (seed, safety, guidance) = (int("seed"), boolean("safety_check"), num("guidance_scale").min(0.0));
    match p {
        TextToImage => vec![
            model, text("loras"), text("prompt").required(), size("height"), size("width"),
            guidance, text("negative_prompt"), safety, seed, steps, images,
        ],
        ImageToImage => vec![
            text("prompt").required(), model, text("loras"), num("strength").min(0.0).max(1.0),
            guidance, num("image_guidance_scale").min(0.0), text("negative_prompt"), safety, seed,
            steps, images,
        ],
        ImageToVideo => vec![
            model, size("height"), size("width"), int("fps").min(1.0), int("motion_bucket_id").min(0.0),
            num("noise_aug_strength").min(0.0), safety, seed, steps,
        ],
        Upscale => vec![text("prompt").required(), model, safety, seed, steps],
        AudioToText => vec![model, text("return_timestamps")],
        SegmentAnything2 => vec![
            model, text("point_coords"), text("point_labels"), text("box"), text("mask_input"),
            boolean("multimask_output"), boolean("return_logits"), boolean("normalize_coords"),
        ],
        Llm => vec![
            model, num("temperature").min(0.0).max(2.0),
            int("max_tokens").min(1.0).max(f64::from(l.max_llm_tokens)),
            num("top_p").min(0.0).max(1.0), int("top_k").min(-1.0), boolean("stream"),
        ],
        ImageToText => vec![text("prompt"), model],
        // The spec does not mark `text` required (it defaults to ""), but go-livepeer answers 400
        // without it and an empty text would be a zero-unit, unpaid job: require one character.
        TextToSpeech => vec![model, text("text").required().min(1.0), text("description")],
    }
}

/// The JSON Schema (OpenAPI 3.1's dialect) of an object with `specs`' fields: the same table
/// that validates requests, so the published schema cannot drift from what is accepted.
/// `form` is for a multipart body, whose fields are all text: their JSON type is then kept
/// as the format they must parse as.
pub(super) fn object_schema(specs: &[Spec], form: bool) -> Value {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for s in specs {
        let mut field = serde_json::Map::new();
        let ty = match s.ty {
            Ty::Str => "string",
            Ty::Int => "integer",
            Ty::Num => "number",
            Ty::Bool => "boolean",
        };
        field.insert("type".into(), Value::from(if form { "string" } else { ty }));
        if form && s.ty != Ty::Str {
            field.insert("format".into(), Value::from(ty));
        }
        let bound = |v: f64| match s.ty {
            Ty::Num => Number::from_f64(v).map_or(Value::Null, Value::Number),
            _ => Value::from(v as i64),
        };
        let (lo, hi) = match s.ty {
            Ty::Str => ("minLength", "maxLength"),
            _ => ("minimum", "maximum"),
        };
        if !form || s.ty == Ty::Str {
            if let Some(min) = s.min {
                field.insert(lo.into(), bound(min));
            }
            if let Some(max) = s.max {
                field.insert(hi.into(), bound(max));
            }
            if let Some(m) = s.multiple_of {
                field.insert("multipleOf".into(), Value::from(m));
            }
        }
        if s.required {
            required.push(Value::from(s.name));
        }
        properties.insert(s.name.into(), Value::Object(field));
    }
    serde_json::json!({ "type": "object", "properties": properties, "required": required })
}

/// A parsed scalar value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val {
    Str(String),
    Int(i64),
    Num(f64),
    Bool(bool),
}

impl Val {
    pub(super) fn into_json(self) -> Value {
        match self {
            Val::Str(s) => Value::String(s),
            Val::Int(i) => Value::from(i),
            Val::Num(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Val::Bool(b) => Value::Bool(b),
        }
    }

    /// As go-livepeer's multipart writer formats it: `%f` floats, `true`/`false`, decimal ints.
    pub(super) fn into_form(self) -> String {
        match self {
            Val::Str(s) => s,
            Val::Int(i) => i.to_string(),
            Val::Num(f) => format!("{f:.6}"),
            Val::Bool(b) => b.to_string(),
        }
    }
}

/// A field problem before it is located: (`type`, `msg`).
pub(super) type Fault = (&'static str, String);

pub(super) fn fault(kind: &'static str, msg: &str) -> Fault {
    (kind, msg.to_owned())
}

/// A JSON value as `ty`. Strict about kinds (no "5" for an integer), but accepts whole floats
/// such as `512.0` for integers, as pydantic does.
pub(super) fn json_val(ty: Ty, v: Value) -> Result<Val, Fault> {
    match (ty, v) {
        (Ty::Str, Value::String(s)) => Ok(Val::Str(s)),
        (Ty::Str, _) => Err(fault("string_type", "Input should be a valid string")),
        (Ty::Int, Value::Number(ref n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Val::Int(i)),
            (None, Some(f)) if f.fract() != 0.0 => Err(fault(
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
            )),
            (None, Some(f)) if f.abs() < 9.0e18 => Ok(Val::Int(f as i64)),
            _ => Err(fault("int_parsing_size", "Input integer is too large")),
        },
        (Ty::Int, _) => Err(fault("int_type", "Input should be a valid integer")),
        (Ty::Num, Value::Number(ref n)) => match n.as_f64() {
            Some(f) if f.is_finite() => Ok(Val::Num(f)),
            _ => Err(fault("finite_number", "Input should be a finite number")),
        },
        (Ty::Num, _) => Err(fault("float_type", "Input should be a valid number")),
        (Ty::Bool, Value::Bool(b)) => Ok(Val::Bool(b)),
        (Ty::Bool, _) => Err(fault("bool_type", "Input should be a valid boolean")),
    }
}

/// A multipart text value as `ty`, with pydantic's spellings of booleans.
pub(super) fn text_val(ty: Ty, s: &str) -> Result<Val, Fault> {
    let t = s.trim();
    match ty {
        Ty::Str => Ok(Val::Str(s.to_owned())),
        Ty::Int => t.parse().map(Val::Int).map_err(|_| {
            fault(
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            )
        }),
        Ty::Num => match t.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Val::Num(f)),
            Ok(_) => Err(fault("finite_number", "Input should be a finite number")),
            Err(_) => Err(fault(
                "float_parsing",
                "Input should be a valid number, unable to parse string as a number",
            )),
        },
        Ty::Bool => match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "t" | "yes" | "y" | "on" => Ok(Val::Bool(true)),
            "false" | "0" | "f" | "no" | "n" | "off" => Ok(Val::Bool(false)),
            _ => Err(fault(
                "bool_parsing",
                "Input should be a valid boolean, unable to interpret input",
            )),
        },
    }
}

/// Bounds and step of a parsed value.
pub(super) fn check(spec: &Spec, val: &Val) -> Result<(), Fault> {
    let (x, is_str) = match val {
        Val::Str(s) => (s.chars().count() as f64, true),
        Val::Int(i) => (*i as f64, false),
        Val::Num(f) => (*f, false),
        Val::Bool(_) => return Ok(()),
    };
    let plural = |n: f64| if n == 1.0 { "" } else { "s" };
    if let Some(min) = spec.min.filter(|min| x < *min) {
        return Err(if is_str {
            (
                "string_too_short",
                format!("String should have at least {min} character{}", plural(min)),
            )
        } else {
            ("greater_than_equal", format!("Input should be greater than or equal to {min}"))
        });
    }
    if let Some(max) = spec.max.filter(|max| x > *max) {
        return Err(if is_str {
            (
                "string_too_long",
                format!("String should have at most {max} character{}", plural(max)),
            )
        } else {
            ("less_than_equal", format!("Input should be less than or equal to {max}"))
        });
    }
    match (spec.multiple_of, val) {
        (Some(m), Val::Int(i)) if i % m != 0 => {
            Err(("multiple_of", format!("Input should be a multiple of {m}")))
        }
        _ => Ok(()),
    }
}
