"""llama.cpp's own server (`llama-server`) as a managed subprocess, and where its files come from.

`make install` builds the binary from the llama-cpp-python sdist into `<venv>/llama.cpp/bin/`
(scripts/build_llama_server.sh); the same folder keeps llama.cpp's conversion scripts (`src/`), which
turn an HF base folder into an F16 GGUF. One `LlamaServer` is one process: the base GGUF, the LoRA
adapters it loaded at start (all at scale 0: each request picks its own), `slots` parallel sequences
decoded together (continuous batching), and a log file that error messages quote.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from registry.errors import ModelUnavailable

log = logging.getLogger(__name__)

HOME_ENV = "KBLOOP_LLAMA_CPP_HOME"  # overrides <venv>/llama.cpp (where the binary and sources live)


def llama_cpp_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path(sys.prefix) / "llama.cpp")


def server_binary(configured: str = "") -> Path | None:
    """The llama-server to run: the configured path, the one `make install` built, or one on PATH."""
    if configured:
        path = Path(configured)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    built = llama_cpp_home() / "bin" / "llama-server"
    if built.is_file() and os.access(built, os.X_OK):
        return built
    found = shutil.which("llama-server")
    return Path(found) if found else None


def require_binary(configured: str = "") -> Path:
    binary = server_binary(configured)
    if binary is None:
        raise ModelUnavailable(
            "llama.cpp's server is not installed: run `make install` (it builds it with "
            "scripts/build_llama_server.sh), set KBLOOP_LLAMA_SERVER to a llama-server binary, "
            "or set KBLOOP_BACKEND=transformers"
        )
    return binary


def convert_hf_folder(folder: Path, out_dir: Path, outtype: str = "f16") -> Path:
    """An HF model folder as a GGUF file (once; cached by folder path), by llama.cpp's own
    convert_hf_to_gguf.py from the sdist that built the server."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:10]
    target = out_dir / f"{folder.name}-{digest}.{outtype}.gguf"
    if target.exists():
        return target
    script = llama_cpp_home() / "src" / "convert_hf_to_gguf.py"
    if not script.exists():
        raise ModelUnavailable(f"llama.cpp's converter is missing ({script}): run `make install`")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    command = [sys.executable, str(script), str(folder), "--outtype", outtype, "--outfile", str(tmp)]
    log.info("converting %s to %s with llama.cpp's converter (once)", folder, target.name)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ModelUnavailable(f"cannot convert {folder} to GGUF: {' | '.join(tail)}")
    os.replace(tmp, target)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """One llama-server process. `start` returns once /health answers 200 (or raises with the log)."""

    def __init__(
        self,
        binary: Path,
        model: Path,
        loras: list[Path],
        *,
        slots: int,
        context_per_slot: int,
        threads: int,
        log_dir: Path,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.binary, self.model, self.loras = binary, model, list(loras)
        self.slots, self.context_per_slot, self.threads = slots, context_per_slot, threads
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self.log_path = log_dir / "llama-server.log"
        self._log_dir = log_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._inflight = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        args = [
            str(self.binary),
            "--model",
            str(self.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--parallel",
            str(self.slots),
            # the KV cache is split evenly: each slot holds one request's full window
            "--ctx-size",
            str(self.slots * self.context_per_slot),
            "--threads",
            str(self.threads),
            "--threads-batch",
            str(self.threads),
            "--no-webui",
            # weight repacking for the CPU's extra buffer types (AMX here) segfaults while loading the
            # shipped Q4_1 GGUF with this build (seen 2026-12-02 on this machine); plain CPU buffers work
            "--no-repack",
        ]
        for lora in self.loras:
            args += ["--lora", str(lora)]
        if self.loras:
            args.append("--lora-init-without-apply")  # scale 0 unless a request names the adapter
        return args

    def start(self) -> None:
        import httpx

        self._log_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # a port taken between free_port() and bind: try another
            self.port = free_port()
            with self.log_path.open("ab") as out:
                out.write(f"\n--- start: {' '.join(self.command())}\n".encode())
                out.flush()
                self._process = subprocess.Popen(
                    self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            deadline = time.monotonic() + self.startup_timeout_s
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                try:
                    if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                        log.info("llama-server pid %s on port %s (%s)", self.pid, self.port, self.model.name)
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            self.stop()
            if "bind" not in self.log_tail().lower() or attempt == 2:
                break
        raise ModelUnavailable(f"llama-server did not start ({self.model.name}): {self.log_tail()}")

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exited(self, within_s: float) -> bool:
        """Whether the process has ended, or ends within `within_s` (a broken connection is seen a moment
        before the kernel reports the process dead)."""
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

    # requests hold a lease while they stream, so a replaced server is stopped only once drained
    def acquire(self) -> None:
        with self._lock:
            self._inflight += 1

    def release(self) -> None:
        with self._lock:
            self._inflight -= 1

    @property
    def inflight(self) -> int:
        return self._inflight

    def drain_and_stop(self, timeout_s: float) -> None:
        """Wait (up to `timeout_s`) for the requests it is streaming to end, then stop it."""
        deadline = time.monotonic() + timeout_s
        while self._inflight > 0 and time.monotonic() < deadline and self.alive():
            time.sleep(0.05)
        self.stop()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
