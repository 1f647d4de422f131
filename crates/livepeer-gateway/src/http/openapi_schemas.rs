//! The named schemas of `/openapi.json` whose shapes are the gateway's own: its errors, the
//! catalogue and the model list. They are strict (`additionalProperties: false`), and the
//! tests validate live answers against them, so a field added to `catalog::CatalogEntry`
//! without its schema fails there.

use serde_json::{Value, json};

fn nullable(schema: Value) -> Value {
    json!({ "oneOf": [schema, { "type": "null" }] })
}

fn strict(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "additionalProperties": false, "required": required, "properties": properties })
}

/// An exact amount of wei: a whole number or `num/den`.
fn wei() -> Value {
    json!({ "type": "string", "pattern": "^[0-9]+(/[0-9]+)?$" })
}

fn range() -> Value {
    strict(&["min_wei", "max_wei"], json!({ "min_wei": wei(), "max_wei": wei() }))
}

fn catalog_entry() -> Value {
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    let count = json!({ "type": "integer", "minimum": 0 });
    let price = strict(
        &["min_wei_per_unit", "max_wei_per_unit", "unit", "per_second", "per_minute"],
        json!({
            "min_wei_per_unit": wei(), "max_wei_per_unit": wei(), "unit": { "type": "string" },
            "per_second": nullable(range()), "per_minute": nullable(range()),
        }),
    );
    let latency = strict(
        &["samples", "p50_ms", "p95_ms"],
        json!({ "samples": count, "p50_ms": count, "p95_ms": count }),
    );
    strict(
        &[
            "id",
            "pipeline",
            "model",
            "name",
            "modalities",
            "availability",
            "orchestrators",
            "capacity",
            "network_price",
            "latency",
            "customer_price",
        ],
        json!({
            "id": { "type": "string" },
            "pipeline": { "type": "string" },
            "model": { "type": "string", "description": "the model, or the BYOC capability's name" },
            "name": { "type": "string" },
            "modalities": strict(&["input", "output"], json!({ "input": strings, "output": strings })),
            "availability": { "enum": ["warm", "cold"] },
            "orchestrators": strict(&["warm", "cold"], json!({ "warm": count, "cold": count })),
            "capacity": count,
            "network_price": nullable(price),
            "latency": nullable(latency),
            "customer_price": nullable(strict(
                &["unit", "usd_per_unit", "usd_per_unit_exact", "wei_per_unit", "orchestrator_multiple"],
                json!({
                    "unit": strict(&["name", "gateway_units"], json!({
                        "name": { "type": "string" }, "gateway_units": count,
                    })),
                    "usd_per_unit": nullable(json!({ "type": "string" })),
                    "usd_per_unit_exact": nullable(json!({ "type": "string" })),
                    "wei_per_unit": nullable(json!({ "type": "string" })),
                    "orchestrator_multiple": nullable(json!({ "type": "string" })),
                }),
            )),
        }),
    )
}

/// The named schemas.
pub(crate) fn schemas() -> Value {
    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "status"],
                    "properties": {
                        "message": { "type": "string" },
                        "type": { "type": "string" },
                        "status": { "type": "integer" },
                    },
                },
                "detail": { "description": "FastAPI's shape: {msg} or a list of field errors" },
            },
        },
        "CatalogEntry": catalog_entry(),
        "Catalog": strict(&["object", "data"], json!({
            "object": { "const": "catalog" },
            "data": { "type": "array", "items": { "$ref": "#/components/schemas/CatalogEntry" } },
        })),
        "Model": strict(&["id", "object", "created", "owned_by"], json!({
            "id": { "type": "string" }, "object": { "const": "model" },
            "created": { "type": "integer" }, "owned_by": { "type": "string" },
        })),
        "ModelList": strict(&["object", "data"], json!({
            "object": { "const": "list" },
            "data": { "type": "array", "items": { "$ref": "#/components/schemas/Model" } },
        })),
    })
}
