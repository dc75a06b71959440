//! Privacy: what may be written at all (on/off, exclude globs), how much of it
//! (full text or hashes and lengths), and secrets scrubbed from whatever is written.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Suggestion;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrivacyLevel {
    /// Prompts and completions are stored (secrets scrubbed).
    #[default]
    Full,
    /// Only `sha256:<hex> len:<n>` of each text is stored.
    NoCode,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Privacy {
    pub enabled: bool,
    pub level: PrivacyLevel,
    /// Workspace-relative globs; suggestions about matching files are not stored.
    pub exclude_globs: Vec<String>,
}

impl Default for Privacy {
    fn default() -> Self {
        Self {
            enabled: true,
            level: PrivacyLevel::Full,
            exclude_globs: Vec::new(),
        }
    }
}

fn hashed(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex} len:{}", text.len())
}

impl Privacy {
    /// The suggestion as it may be stored, or `None` when it may not be stored.
    /// Invalid globs are ignored (and match nothing).
    pub fn apply(&self, mut s: Suggestion) -> Option<Suggestion> {
        if !self.enabled {
            return None;
        }
        if let Some(file) = &s.file {
            let excluded = self.exclude_globs.iter().any(|g| {
                globset::Glob::new(g)
                    .map(|g| g.compile_matcher().is_match(file))
                    .unwrap_or(false)
            });
            if excluded {
                return None;
            }
        }
        match self.level {
            PrivacyLevel::Full => {
                let (prompt, completion) = (scrub_secrets(&s.prompt), scrub_secrets(&s.completion));
                // A secret was in the text, so it is in the token ids too.
                if prompt != s.prompt || completion != s.completion {
                    s.tokens = None;
                }
                s.prompt = prompt;
                s.completion = completion;
            }
            PrivacyLevel::NoCode => {
                s.prompt = hashed(&s.prompt);
                s.completion = hashed(&s.completion);
                // Token ids are the code, spelled otherwise.
                s.tokens = None;
            }
        }
        Some(s)
    }
}

const REDACTED: &str = "[REDACTED]";

static PATTERNS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // PEM private keys (RSA, EC, OPENSSH, PKCS#8, encrypted).
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|\z)",
        // AWS access key ids.
        r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
        // GitHub tokens.
        r"\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}\b",
        r"\bgithub_pat_[A-Za-z0-9_]{20,}\b",
        // Slack tokens.
        r"\bxox[abpr]-[A-Za-z0-9-]{10,}\b",
        // OpenAI-style keys.
        r"\bsk-[A-Za-z0-9_-]{20,}\b",
        // JSON web tokens.
        r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b",
        // Bearer tokens in headers.
        r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}",
    ]
    .iter()
    .map(|p| Regex::new(p).expect("secret patterns are valid"))
    .collect()
});

/// `api_key = "…"`, `password: '…'`, `SECRET_TOKEN="…"`: the quoted value goes.
static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b([A-Za-z0-9_]*(?:api[_-]?key|secret|token|passwd|password|private[_-]?key)[A-Za-z0-9_]*\s*[:=]\s*)(["'])([^"'\n]{4,})(["'])"#,
    )
    .expect("the assignment pattern is valid")
});

/// Replaces secrets with `[REDACTED]` (see the patterns above).
pub fn scrub_secrets(text: &str) -> String {
    let mut out = std::borrow::Cow::Borrowed(text);
    for re in PATTERNS.iter() {
        if re.is_match(&out) {
            out = std::borrow::Cow::Owned(re.replace_all(&out, REDACTED).into_owned());
        }
    }
    if ASSIGNMENT.is_match(&out) {
        out = std::borrow::Cow::Owned(
            ASSIGNMENT
                .replace_all(&out, format!("${{1}}${{2}}{REDACTED}${{4}}"))
                .into_owned(),
        );
    }
    out.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suggestion(file: Option<&str>, prompt: &str) -> Suggestion {
        Suggestion {
            id: "s".into(),
            created_ms: 1,
            skill: "edit".into(),
            model_name: "m".into(),
            model_version: "base".into(),
            workspace: None,
            file: file.map(str::to_string),
            language: None,
            prompt: prompt.into(),
            completion: "done".into(),
            logprob_sum: -1.0,
            token_count: 1,
            latency_ms: 1,
            tokens: Some(crate::Tokens {
                prompt_ids: vec![1, 2],
                completion_ids: vec![3],
                logprobs: vec![-1.0],
                temperature: 1.0,
            }),
        }
    }

    #[test]
    fn each_secret_kind_is_scrubbed() {
        let secrets = [
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "github_pat_11ABCDEFG0123456789_abcdefghijkl",
            "xoxb-1234567890-abcdefghij",
            "sk-proj-abcdefghijklmnopqrstuvwxyz",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "Authorization: Bearer abcdef0123456789abcdef",
        ];
        for s in secrets {
            let text = format!("before {s} after");
            let out = scrub_secrets(&text);
            assert!(out.contains(REDACTED), "{s} was not scrubbed: {out}");
            assert!(out.starts_with("before "), "{out}");
        }
        let out = scrub_secrets("API_KEY = \"abc123secretvalue\"\npassword: 'hunter22'");
        assert_eq!(out, "API_KEY = \"[REDACTED]\"\npassword: '[REDACTED]'");
    }

    #[test]
    fn ordinary_code_is_untouched() {
        let code = "def token_count(tokens):\n    key = tokens[0]\n    return len(tokens)  # secret sauce\nlet skip = 3;\n";
        assert_eq!(scrub_secrets(code), code);
    }

    #[test]
    fn policy_disabled_excluded_and_no_code() {
        let off = Privacy {
            enabled: false,
            ..Privacy::default()
        };
        assert!(off.apply(suggestion(None, "x")).is_none());
        let excl = Privacy {
            exclude_globs: vec!["secrets/**".into(), "[bad".into()],
            ..Privacy::default()
        };
        assert!(excl.apply(suggestion(Some("secrets/a.py"), "x")).is_none());
        assert!(excl.apply(suggestion(Some("src/a.py"), "x")).is_some());
        let no_code = Privacy {
            level: PrivacyLevel::NoCode,
            ..Privacy::default()
        };
        let s = no_code.apply(suggestion(None, "print(1)")).unwrap();
        assert!(
            s.prompt.starts_with("sha256:") && s.prompt.ends_with(" len:8"),
            "{}",
            s.prompt
        );
        assert!(!s.prompt.contains("print"));
        assert!(s.tokens.is_none(), "no token ids at no_code");
        let full = Privacy::default()
            .apply(suggestion(None, "k = 'AKIAIOSFODNN7EXAMPLE'"))
            .unwrap();
        assert!(full.prompt.contains(REDACTED));
        assert!(
            full.tokens.is_none(),
            "a scrubbed secret's token ids go too"
        );
        let kept = Privacy::default().apply(suggestion(None, "x = 1")).unwrap();
        assert!(kept.tokens.is_some());
    }
}
