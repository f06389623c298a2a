"""One typed `Settings` for kbloop, read from `KBLOOP_*` environment variables (and `.env`) once.

The packages build their own views of it (`rag.config.RagConfig.from_settings`,
`registry.gate.GateThresholds.from_settings`), so this module imports no other kbloop package."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.datadir import DataDir


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KBLOOP_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        Path("var"), description="Everything kbloop writes: index, database, models, runs."
    )
    index_dir: Path | None = Field(None, description="Search index folder (default: DATA_DIR/index).")
    embedder: str = Field(
        "", description="sentence-transformers model folder or id; empty = the bundled all-MiniLM-L6-v2."
    )
    embed_batch_size: int = Field(64, ge=1, le=4096, description="Texts per embedding batch during ingest.")
    chunk_max_tokens: int = Field(240, ge=32, le=8192, description="Largest chunk, in embedder tokens.")
    chunk_overlap_tokens: int = Field(
        40, ge=0, le=1024, description="Overlap between split chunks, in tokens."
    )
    chunk_min_tokens: int = Field(24, ge=0, le=1024, description="Smaller sections merge into the next one.")
    max_file_mb: float = Field(20.0, gt=0, description="Files larger than this are skipped at ingest.")
    fusion: Literal["rrf", "weighted"] = Field(
        "rrf", description="Hybrid fusion: reciprocal rank or weighted sum."
    )
    search_k: int = Field(5, ge=1, le=100, description="Passages retrieved per question.")
    golden: Path | None = Field(
        None, description="The deployment's golden set (JSONL; default: DATA_DIR/golden.jsonl)."
    )

    # the answer service
    host: str = Field("127.0.0.1", description="Address `kbloop serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `kbloop serve` listens on.")
    model: str = Field(
        "", description="Policy base model: HF folder or hub id; empty = the bundled SmolLM2-135M-Instruct."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the policy runs: auto = CUDA (bf16) when present, else CPU (float32)."
    )
    max_batch: int = Field(8, ge=1, le=256, description="Most generations decoded together.")
    batch_wait_ms: float = Field(5.0, ge=0, le=1000, description="How long a batch waits for more requests.")
    queue_size: int = Field(64, ge=1, le=100_000, description="Requests waiting beyond this get 503.")
    request_timeout_s: float = Field(120.0, gt=0, description="A generation running longer is stopped (504).")
    max_tokens_default: int = Field(256, ge=1, le=8192, description="Answer length when a request sets none.")
    max_tokens_limit: int = Field(1024, ge=1, le=32768, description="Largest `max_tokens` a request may ask.")
    answer_passages: int = Field(3, ge=1, le=20, description="Passages put in the prompt for each answer.")
    answer_checks: bool = Field(
        True,
        description="End answers that echo the prompt and check each generated sentence (citations, "
        "loops, echo, facts in the passages); an answer with none that passes is replaced by passage "
        "sentences.",
    )
    answer_min_coverage: float = Field(
        1.4,
        ge=0,
        le=5,
        description="A generated answer is shown once it covers the question's words this many times as "
        "well as the passages' best sentence does (at most all of them); else passage sentences replace it.",
    )
    answer_min_support: float = Field(
        0.8,
        ge=0,
        le=1,
        description="Share of each generated sentence's content words that must occur in the passages.",
    )
    repetition_penalty: float = Field(
        1.15, ge=1.0, le=3.0, description="Divides the logits of tokens already in the answer (1 = off)."
    )
    no_repeat_ngram_size: int = Field(
        4, ge=0, le=32, description="Never repeat a token n-gram of the answer (0 = off)."
    )
    refusal_threshold: float | None = Field(
        None, ge=0, le=1, description="Override the calibrated confidence threshold below which we refuse."
    )
    max_body_kb: int = Field(256, ge=1, description="Request bodies larger than this get 413.")
    tokens_file: Path | None = Field(
        None,
        description=(
            "YAML/JSON map of bearer token -> {user, role, groups}: multi-user mode. Unset on a loopback "
            "host: local single-user mode, the local user an operator; unset elsewhere: every request 401."
        ),
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (none by default)."
    )

    # the evaluation gate a candidate must pass before promotion (an operator may override, audited)
    gate_max_similarity_drop: float = Field(
        0.02, ge=0, le=1, description="Largest drop of golden-set answer similarity vs the champion."
    )
    gate_max_citation_drop: float = Field(
        0.05, ge=0, le=1, description="Largest drop of the share of answers citing the golden source."
    )
    gate_max_refusal_drop: float = Field(
        0.10, ge=0, le=1, description="Largest drop of refusals on unanswerable golden questions."
    )
    gate_min_reward_win_rate: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Reward model must prefer the candidate on at least this share (DPO/KTO candidates; "
        "a PPO candidate was optimised against it, so there it is reported, not gated).",
    )
    gate_min_checks_win_rate: float = Field(
        0.5,
        ge=0,
        le=1,
        description="The answer checks (citations, grounding, loops, copying, length) must score the "
        "candidate's held-out answers above the champion's on at least this share.",
    )
    gate_max_kl: float = Field(12.0, ge=0, description="Largest KL to the champion per response.")
    gate_max_drift: float = Field(
        24.0, ge=0, description="Largest KL to the base model per response: the drift of all refreshes."
    )
    gate_max_length_drift: float = Field(
        0.5, ge=0, description="Largest relative change of the mean answer length vs the champion."
    )

    # the background trainer
    trainer_autostart: bool = Field(
        False, description="Start the background trainer (`kbloop trainer run`) beside `kbloop serve`."
    )
    trainer_min_feedback: int = Field(50, ge=1, description="New feedback events that trigger a refresh.")
    trainer_interval_h: float = Field(
        24.0, ge=0, description="Refresh at least this often when any feedback arrived (0 = only by count)."
    )
    trainer_algo: Literal["ppo", "dpo", "kto"] = Field(
        "ppo",
        description="The policy update of a refresh (`kbloop trainer`, `kbloop train refresh`, `simulate`): "
        "PPO against the reward, DPO on pairs or KTO on thumbs.",
    )

    # automatic promotion and rollback, applied by the background trainer (`kbloop trainer run`)
    auto_promote: bool = Field(
        False, description="Promote the canary when its human win-rate CI lower bound is above 50%."
    )
    auto_promote_min_comparisons: int = Field(
        30, ge=1, description="Side-by-side votes of canary vs champion needed before auto-promotion."
    )
    auto_rollback: bool = Field(
        True, description="Roll back a champion whose thumbs-down rate rose above the previous one's."
    )
    auto_rollback_margin: float = Field(
        0.1, ge=0, le=1, description="How much higher the thumbs-down rate may be."
    )
    auto_rollback_min_votes: int = Field(
        50, ge=1, description="Votes on each version needed before a rollback."
    )

    # generation backends (service/generation/backends.py)
    backend: Literal["auto", "llamacpp", "vllm", "transformers"] = Field(
        "auto",
        description="Who generates: auto = vLLM on CUDA where it is installed (or KBLOOP_VLLM_URL is set); "
        "llama.cpp when its server is installed and the policy is the bundled GGUF (not on CUDA); else "
        "transformers.",
    )
    llama_server: str = Field(
        "", description="Path to a llama-server binary; empty = the one `make install` built, or PATH."
    )
    llamacpp_weights: Literal["f16", "q8_0", "shipped"] = Field(
        "f16",
        description="Bundled policy on llama.cpp: an F16 (or Q8_0) conversion of the base folder the "
        "trainer trains, or the shipped Q4_1 GGUF (slower prefill on CPU: bench/RESULTS.md).",
    )
    llamacpp_slots: int = Field(
        8, ge=1, le=256, description="llama-server parallel slots (answers decoded together)."
    )
    llamacpp_context: int = Field(
        2048, ge=256, le=131072, description="Context window of each llama-server slot, in tokens."
    )
    llamacpp_threads: int = Field(0, ge=0, le=1024, description="llama-server CPU threads; 0 = all cores.")
    vllm_python: str = Field(
        "",
        description="Python of the venv with vLLM (make install-vllm); empty = .venv-vllm/bin/python if it "
        "exists (in the working directory or beside the app's venv).",
    )
    vllm_url: str = Field(
        "",
        description="An external OpenAI-compatible vLLM server (started with --enable-lora and "
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) instead of a managed one, e.g. http://gpu-1:8000.",
    )
    vllm_max_model_len: int = Field(
        2048,
        ge=256,
        le=1_048_576,
        description="Context window of the vLLM server, in tokens: the managed one is started with it; "
        "for an external one, set it to that server's --max-model-len.",
    )
    vllm_max_num_seqs: int = Field(
        16, ge=1, le=4096, description="Sequences the vLLM server decodes together (beyond: its queue)."
    )
    vllm_max_loras: int = Field(4, ge=1, le=256, description="LoRA adapters vLLM batches together.")
    vllm_max_lora_rank: int = Field(
        0,
        ge=0,
        le=512,
        description="--max-lora-rank of the managed vLLM server; 0 = the largest rank of the registry's "
        "adapters at start (at least 16). An adapter of a larger rank is refused.",
    )
    vllm_args: str = Field(
        "",
        description="Extra arguments for the managed vLLM server, shell-quoted (e.g. "
        "'--dtype bfloat16 --gpu-memory-utilization 0.8').",
    )
    vllm_startup_timeout_s: float = Field(
        600.0, gt=0, description="How long the managed vLLM server may take to answer /health."
    )

    @property
    def data(self) -> DataDir:
        """Every path under `data_dir`, named (core/datadir.py)."""
        return DataDir(self.data_dir)

    @property
    def resolved_index_dir(self) -> Path:
        return self.index_dir or self.data.index

    @property
    def golden_path(self) -> Path:
        """The golden set's file (it may not exist yet: a deployment without a golden set)."""
        return self.golden or self.data.golden

    @property
    def models_dir(self) -> Path:
        return self.data.models

    @property
    def database_path(self) -> Path:
        return self.data.database


@lru_cache
def get_settings() -> Settings:
    return Settings()
