//! Kinds of job: the protocol's capability ids and AI pipeline names, and [`JobKey`] (a
//! capability and a model), by which the pool indexes orchestrators and the job paths, payment
//! and metrics name a job. A leaf: it imports nothing of the crate, so every module may use it.

/// Capability id of H.264 transcoding, the first of the defaults.
pub const H264: u32 = 0;
/// Capability id of live video-to-video (PROTOCOL.md §3.1).
pub const LIVE_VIDEO_TO_VIDEO: u32 = 35;
/// Capability id under which BYOC capabilities appear in `capabilities_prices`, with the
/// capability's name as the constraint (PROTOCOL.md §10.1). A BYOC job's [`JobKey`] is this
/// id and the name as its model.
pub const BYOC: u32 = 37;

/// The nine batch AI pipelines and live-video-to-video, with their capability ids.
pub const AI_PIPELINES: [(&str, u32); 10] = [
    ("text-to-image", 27),
    ("image-to-image", 28),
    ("image-to-video", 29),
    ("upscale", 30),
    ("audio-to-text", 31),
    ("segment-anything-2", 32),
    ("llm", 33),
    ("image-to-text", 34),
    ("live-video-to-video", 35),
    ("text-to-speech", 36),
];

/// The capability id of an AI pipeline name such as `text-to-image`.
pub fn pipeline_capability(pipeline: &str) -> Option<u32> {
    AI_PIPELINES.iter().find(|(name, _)| *name == pipeline).map(|(_, id)| *id)
}

/// The pipeline name of a capability id, if it is an AI pipeline.
pub fn capability_pipeline(id: u32) -> Option<&'static str> {
    AI_PIPELINES.iter().find(|(_, cap)| *cap == id).map(|(name, _)| *name)
}

/// A kind of job: a capability and, for AI, a model. Transcoding is capability 0, model "".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct JobKey {
    /// Capability id.
    pub capability: u32,
    /// Model id; empty for transcoding.
    pub model: String,
}

impl JobKey {
    /// An AI job for `model` of `pipeline`, or `None` for an unknown pipeline.
    pub fn ai(pipeline: &str, model: &str) -> Option<Self> {
        Some(Self { capability: pipeline_capability(pipeline)?, model: model.to_owned() })
    }

    /// A transcoding job.
    pub fn transcode() -> Self {
        Self { capability: H264, model: String::new() }
    }

    /// The transcoding of the stream `manifest`: its payment session (auth token, ticket
    /// params, balance) with each orchestrator is its own, as go-livepeer's gateway keeps one
    /// per stream; the orchestrator then counts the stream as one session of its own.
    pub fn transcode_stream(manifest: &str) -> Self {
        Self { capability: H264, model: manifest.to_owned() }
    }

    /// A BYOC job of the capability `name`.
    pub fn byoc(name: &str) -> Self {
        Self { capability: BYOC, model: name.to_owned() }
    }

    /// Whether this is a BYOC job.
    pub fn is_byoc(&self) -> bool {
        self.capability == BYOC
    }

    /// The pipeline name, `byoc`, or `transcode`.
    pub fn pipeline(&self) -> &'static str {
        if self.is_byoc() {
            return "byoc";
        }
        capability_pipeline(self.capability).unwrap_or("transcode")
    }

    /// What `Display` writes, `pipeline/model` (or the pipeline alone), put together without
    /// `core::fmt`: the recent history keys every answered request by it.
    pub fn name(&self) -> String {
        let pipeline = self.pipeline();
        if self.model.is_empty() {
            return pipeline.to_owned();
        }
        let mut name = String::with_capacity(pipeline.len() + 1 + self.model.len());
        name.push_str(pipeline);
        name.push('/');
        name.push_str(&self.model);
        name
    }
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.model.is_empty() {
            f.write_str(self.pipeline())
        } else {
            write!(f, "{}/{}", self.pipeline(), self.model)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_name_is_what_display_writes() {
        let keys = [
            JobKey::ai("llm", "meta-llama/Meta-Llama-3.1-8B-Instruct").unwrap(),
            JobKey::ai("text-to-image", "").unwrap(),
            JobKey::transcode(),
            JobKey::transcode_stream("stream/1"),
            JobKey::byoc("echo"),
        ];
        for key in keys {
            assert_eq!(key.name(), key.to_string());
        }
        assert_eq!(JobKey::byoc("echo").name(), "byoc/echo");
        assert_eq!(JobKey::transcode().name(), "transcode");
    }
}
