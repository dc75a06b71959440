//! Localization in the editor: the request `basis/localize {query, limit?}` and
//! the command `basis.localize` (`"query"` or `{query, limit?}`) answer ranked
//! locations: retrieval candidates, the model's choice of files, the rest in
//! retrieval order.
//!
//! The model only reorders retrieval's ranking where it is known to do better:
//! with `localize.useModel: "auto"` (the default) that is where `basis eval` of
//! the served version on this repository found its ranking better than
//! retrieval's (the figures the registry keeps per version); elsewhere the answer
//! is retrieval's ranking, with no generation.

use std::sync::atomic::Ordering;

use basis_skills::localize::{self, LocalizeSkill};
use basis_skills::Skill;
use serde_json::Value;
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::Uri;

use crate::indexing::wait_for_index;
use crate::model_host::Served;
use crate::proto::{self, LocalizeParams, LocalizeResult, LocalizedLocation, Texts};
use crate::settings::UseModel;
use crate::state::Ctx;

pub const COMMAND: &str = "basis.localize";

/// `basis/localize`.
pub async fn request(cx: &Ctx, params: LocalizeParams) -> Result<LocalizeResult> {
    if params.query.trim().is_empty() {
        return Err(proto::invalid_params(
            "`query` is empty; describe the issue",
        ));
    }
    wait_for_index(&cx.shared).await?;
    let edits_before = cx.shared.edits.load(Ordering::Acquire);
    let settings = cx.shared.settings.lock().clone();
    let mut opts = LocalizeSkill::default_options()
        .sampled(settings.sampling.temperature, settings.sampling.seed);
    opts.sampling.max_tokens = settings.sampling.max_tokens;
    let input = localize::Input {
        candidates: localize::candidates(
            &cx.shared.index.read(),
            &params.query,
            settings.localize.candidates.max(1),
        ),
        issue: params.query.clone(),
        limit: params.limit.unwrap_or(10).clamp(1, 100),
    };
    let served = cx.shared.models.get().await.map_err(|e| {
        proto::internal(format!(
            "the model is not available: {}",
            basis_model::error::Causes(e.as_ref())
        ))
    })?;
    let root = cx.shared.root().unwrap_or_default();
    let use_model = match settings.localize.use_model {
        UseModel::Always => true,
        UseModel::Never => false,
        UseModel::Auto => evaluated_better(&served, &root),
    };
    let (outcome, served) = if use_model {
        cx.generate("Basis: localizing", move |lm, on, cancelled| {
            LocalizeSkill::run(lm, &input, &opts, on, cancelled)
        })
        .await?
    } else {
        let outcome = localize::Outcome {
            locations: localize::rank(&[], &input.candidates, input.limit),
            chosen: Vec::new(),
            generated: Default::default(),
        };
        (outcome, served)
    };
    if cx.shared.edits.load(Ordering::Acquire) != edits_before {
        return Err(Error::content_modified());
    }
    let suggestion_id = cx
        .record(
            basis_skills::SkillId::Localize,
            &outcome.generated,
            &served,
            None,
        )
        .await?;

    let enc = cx.shared.encoding();
    let open = |uri: &str| cx.shared.open_rope(uri);
    let mut texts = Texts::new(&open);
    let locations = outcome
        .locations
        .iter()
        .filter_map(|l| {
            let path = root.join(&l.path);
            let uri = Uri::from_file_path(&path)?;
            let range = match &l.span {
                Some(span) => texts.range(&path, &uri, span, enc),
                None => Default::default(),
            };
            Some(LocalizedLocation {
                uri,
                range,
                symbol: l.symbol.clone(),
                score: l.score,
            })
        })
        .collect();
    Ok(LocalizeResult {
        suggestion_id,
        model_version: served.version.to_string(),
        ranking: if use_model { "model" } else { "retrieval" }.into(),
        locations,
    })
}

/// Whether an evaluation of the served version on the repository at `root`
/// found the model's ranking better than retrieval's (see the module docs).
fn evaluated_better(served: &Served, root: &std::path::Path) -> bool {
    served
        .spec
        .registry()
        .is_some_and(|registry| localize::model_measured_better(&registry, served.version, root))
}

/// `basis.localize`: arguments `["query"]` or `[{query, limit?}]`.
pub async fn command(cx: &Ctx, args: Vec<Value>) -> Result<Value> {
    let params = match args.into_iter().next() {
        Some(Value::String(query)) => LocalizeParams { query, limit: None },
        Some(v) => serde_json::from_value(v).map_err(|e| {
            proto::invalid_params(format!(
                "{COMMAND} takes \"query\" or {{query, limit?}}: {e}"
            ))
        })?,
        None => {
            return Err(proto::invalid_params(format!(
                "{COMMAND} needs the issue text as its argument"
            )))
        }
    };
    let r = request(cx, params).await?;
    serde_json::to_value(r).map_err(proto::internal)
}
