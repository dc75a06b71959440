//! The KV cache of prompt prefixes with the real default model: for every
//! skill's real prompt (built by the skill's own code from the bundled
//! example's tasks), the answer after a cache hit equals the answer of a cold
//! prefill of the same ids; a prompt that changes in the middle (a file edited
//! between requests) reuses only what is unchanged; and under a memory limit
//! that fits one prompt, alternating prompts evict each other and every answer
//! still equals its cold answer (never a stale entry).

mod support;

use basis_model::generate::{Flow, SamplingParams};
use basis_model::{Device, LanguageModel, Precision};
use basis_trainer::episode::Episode;
use basis_trainer::task;
use basis_trainer::workspace::Workspaces;

/// Greedy tokens and their log-probs.
fn answer(lm: &LanguageModel, ids: &[u32]) -> (Vec<u32>, Vec<f32>, usize) {
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: 6,
        ..SamplingParams::default()
    };
    let g = lm
        .generate_controlled(ids, &params, 1, &mut |_| Flow::Continue, &|| false)
        .unwrap();
    let c = g.completions.into_iter().next().unwrap();
    (c.token_ids, c.logprobs, g.reused_prompt_tokens)
}

fn same(a: &(Vec<u32>, Vec<f32>, usize), b: &(Vec<u32>, Vec<f32>, usize), what: &str) {
    assert_eq!(a.0, b.0, "{what}: other tokens");
    // Exactly: each position's arithmetic does not depend on what was cached.
    assert_eq!(a.1, b.1, "{what}: other log-probs");
}

/// One real prompt per skill, from the example's tasks.
fn skill_prompts(lm: &LanguageModel) -> Vec<(String, Vec<u32>)> {
    let dir = tempfile::tempdir().unwrap();
    support::shopkit(dir.path(), "repo");
    let tasks =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shopkit/tasks.jsonl");
    let read = task::read(&tasks).unwrap();
    let workspaces = Workspaces::new(dir.path(), dir.path().join("trees"));
    let mut out: Vec<(String, Vec<u32>)> = Vec::new();
    for t in read.tasks.into_iter().map(|l| l.task) {
        let skill = t.skill().as_str().to_string();
        if out.iter().any(|(s, _)| *s == skill) {
            continue;
        }
        let tree = workspaces.open(&t.repo).unwrap();
        let episode = Episode::prepare(&t, &tree).unwrap();
        let prompt = episode.prompt(lm, &episode.default_options()).unwrap();
        out.push((skill, prompt.fitted.ids));
    }
    assert_eq!(
        out.len(),
        5,
        "{:?}",
        out.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    out
}

#[test]
fn a_cache_hit_answers_as_a_cold_prefill_does_for_every_skill() {
    let lm =
        LanguageModel::load(support::default_model(), Precision::Quantized, &Device::Cpu).unwrap();
    for (skill, ids) in skill_prompts(&lm) {
        lm.generator.clear_prefix();
        let cold = answer(&lm, &ids);
        assert_eq!(
            cold.2, 0,
            "{skill}: the first request found a cached prefix"
        );
        let warm = answer(&lm, &ids);
        assert_eq!(
            warm.2,
            ids.len() - 1,
            "{skill}: the repeat did not reuse the prompt"
        );
        same(&warm, &cold, &skill);

        // The same prompt with a token changed in the middle: only what comes
        // before the change is reused, and the answer is the cold one's.
        let mut edited = ids.clone();
        let at = ids.len() / 2;
        edited[at] = if edited[at] == 13 { 14 } else { 13 };
        let hit = answer(&lm, &edited);
        assert_eq!(hit.2, at, "{skill}: reused past the edit");
        lm.generator.clear_prefix();
        let cold_edited = answer(&lm, &edited);
        same(&hit, &cold_edited, &format!("{skill}, edited"));
    }
    let stats = lm.generator.prefix_stats();
    assert_eq!(stats.hits, 10, "{stats:?}");
}

#[test]
fn under_a_tight_limit_entries_are_evicted_and_never_stale() {
    let lm =
        LanguageModel::load(support::default_model(), Precision::Quantized, &Device::Cpu).unwrap();
    let prompts = skill_prompts(&lm);
    let (a, b) = (&prompts[0].1, &prompts[4].1);
    let cold_a = answer(&lm, a);
    lm.generator.clear_prefix();
    let cold_b = answer(&lm, b);
    // Room for the larger of the two prompts' caches, not for both.
    let one = lm.generator.prefix_stats().bytes.max({
        lm.generator.clear_prefix();
        answer(&lm, a);
        lm.generator.prefix_stats().bytes
    });
    lm.generator.clear_prefix();
    lm.generator.set_prefix_limit(one + one / 2);
    let before = lm.generator.prefix_stats();
    for round in 0..2 {
        same(&answer(&lm, a), &cold_a, &format!("round {round}, a"));
        same(&answer(&lm, b), &cold_b, &format!("round {round}, b"));
    }
    let after = lm.generator.prefix_stats();
    assert!(after.evictions >= 3 + before.evictions, "{after:?}");
    assert!(
        after.entries <= 1 && after.bytes <= one + one / 2,
        "{after:?}"
    );
    lm.generator.set_prefix_limit(0);
    assert_eq!(lm.generator.prefix_stats().entries, 0);
    assert_eq!(answer(&lm, a).2, 0, "a limit of 0 keeps nothing");
}
