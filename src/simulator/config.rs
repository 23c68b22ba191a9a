//! The simulator's knobs, shared by the `simulator` subcommand (clap flags) and in-process users.

use std::fmt;
use std::path::PathBuf;

const DEFAULT_RETRY_AFTER_SECS: u64 = 1;
const DEFAULT_LINES_PER_SEC: u64 = 2000;
const DEFAULT_VALIDATING_MS: u64 = 200;
const DEFAULT_FINALIZING_MS: u64 = 200;
const DEFAULT_CANCELLING_MS: u64 = 200;
const DEFAULT_MAX_FILE_BYTES: u64 = 209_715_200;
const DEFAULT_JOURNAL_CAPACITY: usize = 100_000;

/// All simulator knobs; also the clap flags of `llm-batch-operator simulator`.
///
/// Rates are fractions in `0..=1`. Per-request headers (`x-sim-*`) override the fault knobs.
#[derive(clap::Args, Clone)]
pub struct SimulatorConfig {
    /// When set, every /v1 request needs `Authorization: Bearer KEY`, else 401 invalid_api_key.
    #[arg(long, env = "LLMB_SIM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Fraction of /v1 requests answered 429 with Retry-After.
    #[arg(long = "rate-429", default_value_t = 0.0, value_parser = parse_fraction)]
    pub rate_429: f64,

    /// Retry-After (seconds) sent with injected 429s.
    #[arg(long, default_value_t = DEFAULT_RETRY_AFTER_SECS)]
    pub retry_after: u64,

    /// Fraction of /v1 requests answered 500, 502 or 503.
    #[arg(long = "rate-5xx", default_value_t = 0.0, value_parser = parse_fraction)]
    pub rate_5xx: f64,

    /// Latency added to every /v1 request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Fraction of batch lines that end in the error file (deterministic per custom_id).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub line_failure_rate: f64,

    /// Batches expire after processing about half their lines.
    #[arg(long)]
    pub expire: bool,

    /// Lines processed per second while a batch is in_progress (0 = unpaced).
    #[arg(long, default_value_t = DEFAULT_LINES_PER_SEC)]
    pub lines_per_sec: u64,

    /// Time spent in `validating`, in milliseconds.
    #[arg(long, default_value_t = DEFAULT_VALIDATING_MS)]
    pub validating_ms: u64,

    /// Time spent in `finalizing`, in milliseconds.
    #[arg(long, default_value_t = DEFAULT_FINALIZING_MS)]
    pub finalizing_ms: u64,

    /// Time spent in `cancelling`, in milliseconds.
    #[arg(long, default_value_t = DEFAULT_CANCELLING_MS)]
    pub cancelling_ms: u64,

    /// Answer 404 on /v1/files and /v1/batches, like a gateway without a batch API.
    #[arg(long)]
    pub no_batch_api: bool,

    /// Fail a batch with `token_limit_exceeded` when its tokens (input bytes / 4) on top of
    /// those of the batches in progress would pass this, like OpenAI's enqueued-token limit.
    #[arg(long, value_name = "TOKENS")]
    pub enqueued_token_limit: Option<u64>,

    /// Seed for the random fault draws (deterministic runs).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Where uploaded and produced files are stored (default: a temp dir removed on drop).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// Largest accepted upload, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_BYTES)]
    pub max_file_bytes: u64,

    /// Most requests kept in the journal (`GET /__sim/journal`); past it the oldest go, so a
    /// long-running simulator's memory stays bounded.
    #[arg(long, default_value_t = DEFAULT_JOURNAL_CAPACITY)]
    pub journal_capacity: usize,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            api_key: None,
            rate_429: 0.0,
            retry_after: DEFAULT_RETRY_AFTER_SECS,
            rate_5xx: 0.0,
            latency_ms: 0,
            line_failure_rate: 0.0,
            expire: false,
            lines_per_sec: DEFAULT_LINES_PER_SEC,
            validating_ms: DEFAULT_VALIDATING_MS,
            finalizing_ms: DEFAULT_FINALIZING_MS,
            cancelling_ms: DEFAULT_CANCELLING_MS,
            no_batch_api: false,
            enqueued_token_limit: None,
            seed: None,
            data_dir: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            journal_capacity: DEFAULT_JOURNAL_CAPACITY,
        }
    }
}

impl fmt::Debug for SimulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatorConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("rate_429", &self.rate_429)
            .field("retry_after", &self.retry_after)
            .field("rate_5xx", &self.rate_5xx)
            .field("latency_ms", &self.latency_ms)
            .field("line_failure_rate", &self.line_failure_rate)
            .field("expire", &self.expire)
            .field("lines_per_sec", &self.lines_per_sec)
            .field("validating_ms", &self.validating_ms)
            .field("finalizing_ms", &self.finalizing_ms)
            .field("cancelling_ms", &self.cancelling_ms)
            .field("no_batch_api", &self.no_batch_api)
            .field("enqueued_token_limit", &self.enqueued_token_limit)
            .field("seed", &self.seed)
            .field("data_dir", &self.data_dir)
            .field("max_file_bytes", &self.max_file_bytes)
            .field("journal_capacity", &self.journal_capacity)
            .finish()
    }
}

/// Parses a fraction in `0..=1` (used for flags and `x-sim-*` headers).
pub(crate) fn parse_fraction(s: &str) -> Result<f64, String> {
    let value: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("'{s}' is not between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimulatorConfig,
    }

    #[test]
    fn default_matches_flag_defaults() {
        let parsed = Cli::try_parse_from(["sim"]).unwrap().sim;
        let default = SimulatorConfig::default();
        // api_key may come from the environment; every other knob must match.
        assert_eq!(
            format!(
                "{:?}",
                SimulatorConfig {
                    api_key: None,
                    ..parsed
                }
            ),
            format!("{default:?}")
        );
    }

    #[test]
    fn flags_parse_and_reject_bad_fractions() {
        let cli = Cli::try_parse_from(["sim", "--rate-429", "0.5", "--rate-5xx", "1", "--expire"]);
        let sim = cli.unwrap().sim;
        assert_eq!(sim.rate_429, 0.5);
        assert_eq!(sim.rate_5xx, 1.0);
        assert!(sim.expire);
        assert!(Cli::try_parse_from(["sim", "--rate-429", "1.5"]).is_err());
        assert!(Cli::try_parse_from(["sim", "--line-failure-rate", "x"]).is_err());
    }

    #[test]
    fn debug_hides_the_api_key() {
        let config = SimulatorConfig {
            api_key: Some("sk-very-secret".into()),
            ..SimulatorConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
