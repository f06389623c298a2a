"""`kbloop ingest`, `kbloop search`, `kbloop index info|calibrate`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from cli.errors import fail
from rag.config import RagConfig
from rag.errors import RagError

if TYPE_CHECKING:
    from rag.ingest import IngestReport
    from rag.search import Retriever

index_app = typer.Typer(help="Inspect and tune the search index.", no_args_is_help=True)

IndexOption = Annotated[
    Path | None, typer.Option("--index", help="Index folder (default: KBLOOP_INDEX_DIR or DATA_DIR/index).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
T = TypeVar("T")


def _index_dir(index: Path | None) -> Path:
    from core.settings import get_settings

    return index or get_settings().resolved_index_dir


def _fail(exc: Exception) -> typer.Exit:
    return fail(exc) if isinstance(exc, RagError) else fail("invalid_input", str(exc))


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (RagError, ValueError) as exc:
        raise _fail(exc) from exc


class _RichProgress:
    """Ingest progress as a rich bar on stderr (stdout stays clean for --json)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description:>14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task: Any = None

    @contextmanager
    def running(self) -> Iterator[_RichProgress]:
        with self._progress:
            yield self

    def stage(self, name: str, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=self._progress.tasks[-1].total)
        self._task = self._progress.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)


def ingest_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files and folders that make up the corpus (default: those of the last ingest)."),
    ] = None,
    index: IndexOption = None,
    full: Annotated[
        bool, typer.Option("--full", help="Re-embed everything instead of only changes.")
    ] = False,
    as_json: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Index documents (.md .txt .html .pdf): only new and changed files are embedded again."""
    from core.settings import get_settings
    from rag.index import current_version, read_manifest
    from rag.ingest import ingest

    settings = get_settings()
    index_dir = _index_dir(index)
    if not paths:
        if current_version(index_dir) is None:
            raise _fail(ValueError("give the folders to ingest, e.g. `kbloop ingest examples/acme-handbook`"))
        paths = [Path(p) for p in read_manifest(index_dir).get("roots", [])]
    config = RagConfig.from_settings(settings)
    if quiet or as_json:
        report = _run(lambda: ingest(paths, index_dir, config, full=full))
    else:
        with _RichProgress().running() as progress:
            report = _run(lambda: ingest(paths, index_dir, config, progress=progress, full=full))
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print_report(report, index_dir)


def _print_report(report: IngestReport, index_dir: Path) -> None:
    state = f"published {report.version}" if report.published else f"unchanged, still {report.version}"
    print(f"index {index_dir}: {state}")
    print(
        f"  files: {report.files_indexed} indexed ({report.files_new} new, {report.files_changed} changed, "
        f"{report.files_unchanged} unchanged), {report.files_deleted} removed, {len(report.skipped)} skipped"
    )
    print(f"  chunks: {report.chunks} ({report.chunks_embedded} embedded, {report.chunks_reused} reused)")
    print(f"  time: {report.seconds:.1f} s (embedding {report.embed_seconds:.1f} s)")
    for source, reason in report.skipped:
        print(f"  skipped {source}: {reason}")
    for source, message in report.warnings:
        print(f"  warning {source}: {message}")


def search_command(
    question: Annotated[str | None, typer.Argument(help="The question to search for.")] = None,
    k: Annotated[
        int | None,
        typer.Option("-k", "--k", help="Number of passages (default KBLOOP_SEARCH_K).", min=1, max=100),
    ] = None,
    as_json: JsonOption = False,
    index: IndexOption = None,
    queries: Annotated[
        Path | None,
        typer.Option("--queries", help="File with one question per line; prints one JSON list each."),
    ] = None,
    groups: Annotated[
        str | None, typer.Option("--groups", help="Search as a member of these comma-separated groups only.")
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="hybrid, dense or lexical.")] = "hybrid",
) -> None:
    """Search the index and print the best passages with their sources and scores."""
    from core.settings import get_settings
    from rag.search import Retriever

    if (question is None) == (queries is None):
        raise _fail(ValueError("give either a QUESTION or --queries FILE"))
    if mode not in ("hybrid", "dense", "lexical"):
        raise _fail(ValueError(f"--mode must be hybrid, dense or lexical, not {mode!r}"))
    member_of = [g.strip() for g in groups.split(",") if g.strip()] if groups is not None else None
    settings = get_settings()
    k = k or settings.search_k
    retriever = Retriever(_index_dir(index), RagConfig.from_settings(settings))
    if queries is not None:
        try:
            lines = queries.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise _fail(ValueError(f"cannot read {queries}: {exc}")) from exc
        for line in lines:
            print(json.dumps(_search_json(retriever, line, k, member_of, mode) if line.strip() else []))
            sys.stdout.flush()
        return
    assert question is not None
    if as_json:
        print(json.dumps(_search_json(retriever, question, k, member_of, mode), indent=2))
        return
    result = _run(lambda: retriever.search(question, k=k, groups=member_of, mode=mode))  # type: ignore[arg-type]
    verdict = "answerable" if result.answerable else "probably NOT covered by the knowledge base"
    print(f"index {result.index_version} | confidence {result.confidence:.2f} ({verdict})")
    for hit in result.hits:
        where = f"{hit.source} § {hit.section}" if hit.section else hit.source
        print(f"\n[{hit.rank}] {where}  (score {hit.score:.4f})")
        snippet = " ".join(hit.text.split())
        print("    " + (snippet[:300] + "…" if len(snippet) > 300 else snippet))


def _search_json(
    retriever: Retriever, question: str, k: int, groups: list[str] | None, mode: str
) -> list[dict[str, Any]]:
    result = _run(lambda: retriever.search(question, k=k, groups=groups, mode=mode))  # type: ignore[arg-type]
    extra = {"index_version": result.index_version, "confidence": round(result.confidence, 4),
             "answerable": result.answerable}  # fmt: skip
    return [{**hit.to_json(), **extra} for hit in result.hits]


@index_app.command("info")
def info_command(index: IndexOption = None, as_json: JsonOption = False) -> None:
    """Show the published index version: counts, embedder, files, groups, versions on disk."""
    from collections import Counter

    from rag.index import list_versions, read_manifest

    index_dir = _index_dir(index)
    manifest = _run(lambda: read_manifest(index_dir))
    files: dict[str, Any] = manifest.get("files", {})
    kinds = Counter(Path(s).suffix.lower() or "(none)" for s in files)
    groups = Counter(g for f in files.values() for g in f.get("groups", []))
    calibration = index_dir / "calibration.json"
    summary = {
        "index_dir": str(index_dir),
        "version": manifest["version"],
        "parent": manifest.get("parent"),
        "created": manifest.get("created"),
        "embedder": manifest.get("embedder"),
        "dimension": manifest.get("dimension"),
        "files": len(files),
        "chunks": manifest.get("counts", {}).get("chunks"),
        "file_types": dict(sorted(kinds.items())),
        "groups": dict(sorted(groups.items())),
        "restricted_files": sum(1 for f in files.values() if f.get("groups")),
        "skipped": manifest.get("skipped", []),
        "roots": manifest.get("roots", []),
        "versions_on_disk": list_versions(index_dir),
        "calibration": str(calibration) if calibration.exists() else "default",
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        if key == "skipped":
            print(f"{key}: {len(value)}")
            for item in value:
                print(f"  {item['source']}: {item['reason']}")
        else:
            print(f"{key}: {value}")


@index_app.command("calibrate")
def calibrate_command(
    golden: Annotated[Path, typer.Option("--golden", help="JSONL with `question` and `answerable` fields.")],
    index: IndexOption = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Confidence below which the service refuses; default: set by --max-false-refusals."
        ),
    ] = None,
    max_false_refusals: Annotated[
        float, typer.Option(help="Largest share of answerable questions the threshold may refuse.")
    ] = 0.10,
) -> None:
    """Fit the refusal confidence on labelled questions and save it next to the index."""
    from core.settings import get_settings
    from rag.confidence import fit_calibration
    from rag.search import Retriever

    index_dir = _index_dir(index)
    try:
        rows = [json.loads(line) for line in golden.read_text(encoding="utf-8").splitlines() if line.strip()]
        labelled = [(str(r["question"]), bool(r["answerable"])) for r in rows]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _fail(ValueError(f"cannot read questions from {golden}: {exc}")) from exc
    retriever = Retriever(index_dir, RagConfig.from_settings(get_settings()))
    results = [_run(lambda q=q: retriever.search(q, k=5)) for q, _ in labelled]  # type: ignore[misc]
    features = [r.features for r in results]
    answerable = [a for _, a in labelled]
    calibration = _run(
        lambda: fit_calibration(features, answerable, threshold, max_false_refusals, label=str(golden))
    )
    calibration.save(index_dir / "calibration.json")
    flags = [calibration.probability(f) < calibration.threshold for f in features]
    unanswerable = [f for f, a in zip(flags, answerable, strict=True) if not a]
    answerable_flags = [f for f, a in zip(flags, answerable, strict=True) if a]
    print(
        f"saved {index_dir / 'calibration.json'}: features {calibration.features}, "
        f"weights {calibration.weights}, bias {calibration.bias:.3f}, threshold {calibration.threshold:.3f}"
    )
    print(f"  flagged {sum(unanswerable)}/{len(unanswerable)} unanswerable, "
          f"{sum(answerable_flags)}/{len(answerable_flags)} answerable (in-sample)")  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_command)
    app.command("search")(search_command)
