"""One cross-family table of test log-likelihoods from the benchmarks' result files.

Reads the JSON files under ``benchmarks/results/`` (by default only those committed to git,
so the table is rebuilt from what the repository records; ``--all`` also reads files that
are only on disk), prints one markdown table -- family, data set, test log-likelihood in nats
per example with its standard error, the estimator and whether the number is a bound,
diagnostics, the published number where the result file holds one, the training budget, and
the date (and commit, where recorded) of the run -- and writes it to
``benchmarks/results/leaderboard.md``.

Every benchmark writes its own JSON layout; each layout that carries log-likelihoods is read
by its own function below (``autoregressive``, ``rbm_quality``, ``helmholtz``,
``vae_quality``, ``gan``, ``draw``). A file of another name is searched for records in the layout of
:meth:`pyrogen.evaluate.LogLikelihood.to_dict` (``log_likelihood`` and ``estimator``); files
with no log-likelihood at all (speed, feature and reconstruction benchmarks) are skipped with
a printed note.

Numbers on different data sets are not comparable: on binary data the log-likelihood is
that of a discrete distribution (at most 0), on dequantized MNIST that of a density (large
and positive).

Usage::

    python benchmarks/leaderboard.py            # committed result files
    python benchmarks/leaderboard.py --all      # every result file on disk
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
OUTPUT_NAME = "leaderboard.md"

BINARIZED_MNIST = "binarized MNIST (fixed binarization)"

#: data set names of pyrogen.data as the table prints them (grey-level sets are binarized
#: dynamically by the runs, pyrogen.runs.load_splits)
DATASETS = {
    "binarized_mnist": BINARIZED_MNIST,
    "mnist": "MNIST (dynamic binarization)",
    "omniglot": "Omniglot 28x28 (dynamic binarization)",
    "caltech101_silhouettes": "Caltech-101 Silhouettes (fixed)",
    "digits": "digits 8x8 (threshold)",
}


@dataclass
class Row:
    """One line of the leaderboard."""

    family: str
    dataset: str
    log_likelihood: float
    stderr: float | None
    mc_stderr: float | None
    estimator: str
    bound: bool
    diagnostics: str
    published: str
    budget: str
    date: str
    source: str

    def cells(self) -> list[str]:
        ll = _num(self.log_likelihood)
        if self.stderr is not None and math.isfinite(self.stderr):
            ll += f" ± {self.stderr:.2f}"
        if self.mc_stderr:
            ll += f" (MC ± {self.mc_stderr:.2f})"
        return [
            self.family,
            self.dataset,
            ll,
            self.estimator,
            "yes" if self.bound else "no",
            self.diagnostics or "-",
            self.published or "-",
            self.budget or "-",
            self.date or "-",
            self.source,
        ]


HEADER = [
    "family",
    "data set",
    "test log-likelihood (nats)",
    "estimator",
    "bound",
    "diagnostics",
    "published",
    "training budget",
    "date",
    "source",
]


def _num(v, digits: int = 2) -> str:
    if v is None:
        return "?"
    v = float(v)
    return f"{v:.{digits}f}" if math.isfinite(v) else str(v)


def _date(record: dict) -> str:
    """The run's date and, when recorded, its commit."""
    machine = record.get("machine") or {}
    date = str(machine.get("date", ""))
    commit = record.get("commit") or machine.get("commit")
    return f"{date} ({commit})" if commit else date


def _estimator(r: dict) -> str:
    text = str(r.get("estimator", "?"))
    n = r.get("num_examples")
    k = r.get("num_samples")
    if k and "chains" not in text and "K=" not in text:
        text += f", K={k}"
    if n:
        text += f", {n} test images"
    return text


def _bound(r: dict) -> bool:
    """Recorded as a bound, or an estimator that names itself one (a DBM's mean-field
    bound with an AIS estimate of log Z)."""
    return bool(r.get("bound")) or "bound" in str(r.get("estimator", "")).lower()


def _diagnostics(r: dict) -> str:
    parts = []
    share = r.get("khat_share_above_0.7")
    if share is not None:
        parts.append(f"k-hat > 0.7: {100 * share:.0f}%")
    if r.get("ess_median") is not None and r.get("khat_share_above_0.7") is not None:
        parts.append(f"ESS median {r['ess_median']:.1f}")
    if r.get("log_z_stderr") is not None:
        parts.append(f"log Z ± {r['log_z_stderr']:.2f}")
    return "; ".join(parts)


def _row(r: dict, *, family, dataset, budget, record, source, published="", extra="") -> Row:
    diagnostics = "; ".join(p for p in (_diagnostics(r), extra) if p)
    return Row(
        family=family,
        dataset=dataset,
        log_likelihood=float(r["log_likelihood"]),
        stderr=r.get("stderr"),
        mc_stderr=r.get("mc_stderr"),
        estimator=_estimator(r),
        bound=_bound(r),
        diagnostics=diagnostics,
        published=published,
        budget=budget,
        date=_date(record),
        source=source,
    )


# ---- one reader per layout ---------------------------------------------------------------


def _autoregressive(record: dict, source: str) -> list[Row]:
    """benchmarks/autoregressive.py: ``results.<family>`` records (binarized MNIST, exact)."""
    names = {"fvsbn": "FVSBN", "nade": "NADE", "pixelcnn": "PixelCNN"}
    rows = []
    for key, r in record["results"].items():
        config = ", ".join(f"{k} {v}" for k, v in (r.get("config") or {}).items())
        budget = str(r.get("budget", ""))
        n_train = r.get("train_images", record.get("train_images"))
        if n_train:
            budget += f"; {n_train} training images"
        family = names.get(key, key) + (f" ({config})" if config else "")
        rows.append(
            _row(
                r,
                family=family,
                dataset=BINARIZED_MNIST,
                budget=budget,
                record=record,
                source=source,
            )
        )
    return rows


def _rbm_quality(record: dict, source: str) -> list[Row]:
    """benchmarks/rbm.py (quality): ``results.rbm`` / ``results.dbm`` / ``results.dbn``, AIS
    estimates (a DBN's: importance sampling with the top RBM's AIS log Z) on the record's
    ``dataset`` (binarized MNIST, or Omniglot binarized once); where a
    ``bracket`` is recorded, its RAISE (conservative) and AIS (optimistic) ends on the same
    images go in the diagnostics, and the run's ``seed`` in the budget."""
    names = {"rbm": "RBM (PCD)", "dbm": "DBM", "dbn": "DBN (greedy + up-down)"}
    dataset = {"omniglot": "Omniglot 28x28 (one fixed binarization)"}.get(
        record.get("dataset", "binarized_mnist"), BINARIZED_MNIST
    )
    rows = []
    for key, r in record["results"].items():
        budget = f"{r['train_seconds'] / 60:.1f} min" if "train_seconds" in r else ""
        if record.get("seed") is not None:
            budget += f"{'; ' if budget else ''}seed {record['seed']}"
        extra = ""
        b = r.get("bracket")
        if b:
            extra = (
                f"bracket RAISE {_num(b['lower'])}, AIS {_num(b['upper'])} on "
                f"{b['raise'].get('num_examples', '?')} images"
            )
        rows.append(
            _row(
                r,
                family=names.get(key, key),
                dataset=dataset,
                budget=budget,
                record=record,
                source=source,
                extra=extra,
            )
        )
    return rows


def _helmholtz_published(label: str, published: list[dict]) -> str:
    """The published entry of the same rule and architecture: run labels read
    ``"<architecture>, <rule>[ (K=5)]"``, published names ``"<rule>[ K=5], <architecture>
    (<citation>)"``."""
    if ", " not in label:
        return ""
    arch, rule = label.split(", ", 1)
    rule = rule.split(" (")[0].split()[0]
    for p in published:
        name = str(p.get("name", ""))
        head = name.split(",")[0].split()
        if head and head[0] == rule and arch in name and p.get("nll") is not None:
            cite = name[name.index("(") + 1 : name.rindex(")")] if "(" in name else name
            confirmed = "" if p.get("confirmed") else "; not confirmed"
            return f"{-float(p['nll']):.2f} ({cite}{confirmed})"
    return ""


def _helmholtz(record: dict, source: str) -> list[Row]:
    """benchmarks/helmholtz.py: ``runs`` with a label per architecture and learning rule,
    the published numbers in ``published`` (binarized MNIST, importance sampling)."""
    rows = []
    published = record.get("published") or []
    for r in record["runs"]:
        budget = (
            f"{r.get('epochs', 0):.1f} epochs ({r.get('steps')} steps, batch "
            f"{record.get('batch_size')}), {r.get('seconds', 0) / 60:.1f} min, Adam lr "
            f"{r.get('lr')}"
        )
        rows.append(
            _row(
                r,
                family=f"Helmholtz machine: {r['label']}",
                dataset=BINARIZED_MNIST,
                budget=budget,
                record=record,
                source=source,
                published=_helmholtz_published(r["label"], published),
            )
        )
    return rows


def _vae_quality(record: dict, source: str) -> list[Row]:
    """benchmarks/vae_quality.py: one top-level record, the paper's NLL in ``paper_nll``."""
    args = record.get("args") or {}
    layers = args.get("layers", "?")
    objective = str(args.get("objective", "?")).upper()
    k = args.get("num_particles")
    family = f"{'VAE' if objective == 'VAE' else 'IWAE'} ({layers} stochastic layer"
    family += f"{'s' if layers != 1 else ''}, {objective} k={k})"
    dataset = args.get("dataset", "?")
    seconds = record.get("train_seconds_this_invocation")
    budget = f"{record.get('epochs')} epochs ({record.get('steps')} steps)"
    if seconds is not None:
        budget += f", {seconds / 60:.1f} min"
    paper = record.get("paper_nll")
    published = (
        "" if paper is None else f"{-float(paper):.2f} (Burda et al. 2016, dynamic binarization)"
    )
    return [
        _row(
            record,
            family=family,
            dataset=DATASETS.get(dataset, dataset),
            budget=budget,
            record=record,
            source=source,
            published=published,
        )
    ]


def _gan(record: dict, source: str) -> list[Row]:
    """benchmarks/gan.py: ``rows`` of GAN / GMMN / VAE on Wu et al.'s decoders, AIS
    log-likelihoods of a Gaussian observation model on dequantized MNIST, BDMC gaps, the
    published values in ``published`` as ``"<KIND>-<d>": [mean, stderr]``."""
    rows = []
    published = record.get("published") or {}
    for r in record.get("rows", []):
        if "ais" not in r:
            continue  # a model the run could not train (its row holds the error)
        key = f"{r['kind']}-{r['latent_dim']}"
        train = r.get("train") or {}
        budget = (
            f"{train.get('epochs')} epochs ({train.get('steps')} steps, batch "
            f"{train.get('batch_size')}), {train.get('seconds', 0) / 60:.1f} min"
        )
        pub = published.get(key)
        pub_text = f"{pub[0]:.1f} ± {pub[1]:.1f} (Wu et al. 2017)" if pub else ""
        extra = f"BDMC gap {r['bdmc_gap']:.1f}" if r.get("bdmc_gap") is not None else ""
        if r.get("sigma") is not None:
            extra = "; ".join(p for p in (f"sigma {r['sigma']}", extra) if p)
        rows.append(
            _row(
                r["ais"],
                family=f"{r['kind']} (Wu et al. decoder, {r['latent_dim']}-d)",
                dataset="MNIST dequantized (density)",
                budget=budget,
                record=record,
                source=source,
                published=pub_text,
                extra=extra,
            )
        )
    rows.extend(_gan_iwae(record, source))
    return rows


def _gan_iwae(record: dict, source: str) -> list[Row]:
    """benchmarks/gan.py's ``iwae_table1``: one IWAE on binarized MNIST scored by the IWAE
    bound (training k and a large K) and by AIS from the encoder, as ``estimates`` of
    ``{label, mean, stderr, mc_stderr}`` on ``test_images`` images."""
    table = record.get("iwae_table1") or {}
    budget = (
        f"{table.get('epochs')} epochs ({table.get('steps')} steps, batch 100), "
        f"{table.get('train_seconds', 0) / 60:.1f} min"
    )
    published = table.get("published") or {}
    rows = []
    for e in table.get("estimates", []):
        is_bound = e["label"].startswith("IWAE bound")
        pub = published.get("IWAE bound" if is_bound else "AIS")
        rows.append(
            Row(
                family=f"VAE: IWAE (k={table.get('particles')}, 784-200-200-50)",
                dataset=BINARIZED_MNIST,
                log_likelihood=float(e["mean"]),
                stderr=e.get("stderr"),
                mc_stderr=e.get("mc_stderr"),
                estimator=f"{e['label']}, {table.get('test_images')} test images",
                bound=is_bound,
                diagnostics="",
                published=f"{pub:.2f} (Wu et al. 2017, Table 1)" if pub is not None else "",
                budget=budget,
                date=_date(record),
                source=source,
            )
        )
    return rows


def _draw(record: dict, source: str) -> list[Row]:
    """benchmarks/draw.py: ``nll`` rows of DRAW with / without attention on binarized MNIST
    (``importance`` a LogLikelihood record, ``train`` the budget), ``published`` as
    ``{attention|no_attention: {nll_at_most, source}}``, and ``align_draw`` (alignDRAW's
    log p(x | caption) on MNIST with captions, with its caption fidelity)."""
    rows = []
    published = record.get("published") or {}
    for r in record.get("nll", []):
        if "importance" not in r:
            continue
        train = r.get("train") or {}
        config = train.get("config") or {}
        key = "attention" if r.get("attention") else "no_attention"
        pub = published.get(key) or {}
        rows.append(
            _row(
                r["importance"],
                family=f"DRAW ({'attention' if r.get('attention') else 'no attention'}, "
                f"T={config.get('steps', '?')})",
                dataset=BINARIZED_MNIST,
                budget=f"{train.get('epochs')} epochs ({train.get('steps')} steps, batch "
                f"{train.get('batch_size')}), {train.get('train_seconds', 0) / 60:.1f} min",
                record=record,
                source=source,
                published=f"<= -{pub['nll_at_most']:.2f} (Gregor et al. 2015)"
                if pub.get("nll_at_most")
                else "",
            )
        )
    align = record.get("align_draw") or {}
    if "importance" in align:
        held = ((align.get("fidelity") or {}).get("held_out") or {}).get("match")
        rows.append(
            _row(
                align["importance"],
                family="alignDRAW, log p(x | caption)",
                dataset="MNIST with captions (60 x 60, binarized)",
                budget=f"{align.get('steps')} steps, {align.get('train_seconds', 0) / 60:.1f} min",
                record=record,
                source=source,
                extra=""
                if held is None
                else f"held-out caption fidelity {held:.2f}"
                + ("" if "temperature" not in align else f" (tau = {align['temperature']:g})"),
            )
        )
    return rows


#: file-name prefix -> reader of that layout, or what the file measures instead of a
#: log-likelihood (checked in order; those are still searched for LogLikelihood records)
READERS = [
    ("autoregressive", _autoregressive),
    ("rbm_quality", _rbm_quality),
    ("rbm_speed", "RBM epoch time (benchmarks/rbm.py --speed)"),
    ("helmholtz_speed", "RWS step time (benchmarks/helmholtz_speed.py)"),
    ("helmholtz", _helmholtz),
    ("vae_quality", _vae_quality),
    ("gan", _gan),
    ("draw", _draw),
    ("iwae", "IWAE step time (benchmarks/iwae_speed.py)"),
    ("precision", "step time by precision (benchmarks/precision.py)"),
    ("gpu", "GPU step times (benchmarks/gpu.py)"),
    ("faces", "reconstruction error of deep autoencoders (benchmarks/faces.py)"),
    ("features", "classification accuracy of learned features (benchmarks/features.py)"),
    ("sparse_coding", "sparse coding time to target (benchmarks/sparse_coding.py)"),
]


def _generic(record, source: str, path: str = "") -> list[Row]:
    """Records in the layout of ``LogLikelihood.to_dict`` anywhere in an unknown file."""
    rows = []
    if isinstance(record, dict):
        if "log_likelihood" in record and "estimator" in record:
            data = record.get("dataset") or record.get("data") or "?"
            return [
                _row(
                    record,
                    family=path or source,
                    dataset=DATASETS.get(data, str(data)),
                    budget=str(record.get("budget", "")),
                    record=record,
                    source=source,
                )
            ]
        for key, value in record.items():
            rows += _generic(value, source, f"{path}.{key}" if path else str(key))
    elif isinstance(record, list):
        for i, value in enumerate(record):
            rows += _generic(value, source, f"{path}[{i}]")
    return rows


def read_file(path: Path) -> tuple[list[Row], str]:
    """The rows of one result file, and a note when it has none (or cannot be read)."""
    source = path.stem
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return [], f"{path.name}: skipped, not readable as JSON ({e})"
    what = ""
    for prefix, reader in READERS:
        if source.startswith(prefix):
            if isinstance(reader, str):
                what = reader
                rows = _generic(record, source)
            else:
                try:
                    rows = reader(record, source)
                except (KeyError, TypeError, ValueError) as e:
                    return [], f"{path.name}: skipped, not in the {prefix} layout ({e!r})"
            break
    else:
        rows = _generic(record, source)
    if not rows:
        return [], f"{path.name}: skipped, no log-likelihood in it" + (f": {what}" if what else "")
    return rows, ""


def tracked_files(folder: Path) -> list[Path] | None:
    """The JSON files under ``folder`` that git tracks; ``None`` outside a git work tree."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--", "."],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return sorted(folder / name for name in out.split("\0") if name.endswith(".json"))


def gather(folder: Path, include_untracked: bool = False) -> tuple[list[Row], list[str], list[str]]:
    """Rows of every result file in ``folder`` (committed ones unless
    ``include_untracked`` or ``folder`` is not in a git work tree), the notes on files
    without rows, and the names of the files left out because git does not track them."""
    on_disk = sorted(folder.glob("*.json"))
    files, notes, untracked = on_disk, [], []
    if not include_untracked:
        tracked = tracked_files(folder)
        if tracked is not None:
            files = [f for f in on_disk if f in set(tracked)]
            untracked = [f.name for f in on_disk if f not in set(tracked)]
    rows = []
    for path in files:
        file_rows, note = read_file(path)
        rows += file_rows
        if note:
            notes.append(note)
    rows.sort(key=lambda r: (r.dataset, -r.log_likelihood))
    return rows, notes, untracked


def markdown(rows: list[Row], notes: list[str]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "# Leaderboard: test log-likelihood across families",
        "",
        "Built by `python benchmarks/leaderboard.py` from the result files in "
        "`benchmarks/results/`; rerun it after a benchmark and the diff shows what changed. "
        "Mean test log-likelihood in nats per example (higher is better) ± its standard "
        "error over test examples (MC: the estimator's Monte Carlo error). Compare rows of "
        "the same data set only, and mind the budgets: most are short CPU runs, the "
        "published numbers long GPU runs. `bound = yes`: a lower bound on log p(x), not an "
        "estimate of it.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(esc(c) for c in row.cells()) + " |" for row in rows]
    if not rows:
        lines.append("| " + " | ".join(["(no results)"] + ["-"] * (len(HEADER) - 1)) + " |")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="result folder")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"markdown file (default <results>/{OUTPUT_NAME})"
    )
    parser.add_argument(
        "--all", action="store_true", help="also read result files git does not track"
    )
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        parser.error(f"--results: no such folder {args.results}")
    rows, notes, untracked = gather(args.results, include_untracked=args.all)
    text = markdown(rows, notes)
    out = args.out if args.out is not None else args.results / OUTPUT_NAME
    out.write_text(text)
    print(text)
    if untracked:  # printed, not written: the file depends on committed results only
        print(f"not committed, so not read (--all reads them): {', '.join(untracked)}")
    print(f"wrote {out} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
