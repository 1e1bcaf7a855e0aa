"""Generate docs/results.md from the benchmark JSON files in benchmarks/results/.

    python benchmarks/make_results_page.py

Reads the isbi*.json, paper_table1*.json, snr_sweep*.json, in_domain*.json and
fit_positions*.json files named below, close_pairs.json and speed_*.json (those that
exist) and writes tables plus links to the figures the benchmarks saved.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import REPO, RESULTS

OUT = REPO / "docs" / "results.md"


#: result files of benchmarks/isbi.py and benchmarks/paper_table1.py, and their section titles
ISBI_RESULTS = {
    "isbi_original.json": "The ISBI 2013 high-density stack (original frames): bundled DeepCEL0",
    "isbi_gpu_cel0.json": "The ISBI 2013 stack on an H100: CEL0 on all 361 frames (the DeepCEL0 rows are the "
                          "previous bundled model, stages 1 + 2)",
    "isbi_gpu_paper_schedule.json": "The ISBI 2013 stack: DeepCEL0 and Deep-STORM trained with the paper's "
                                    "schedule (H100)",
    "isbi_budget_matched.json": "The ISBI 2013 stack: DeepCEL0 and Deep-STORM, 8 epochs each (CPU)",
}
TABLE1_RESULTS = {
    "paper_table1.json": "Paper Table 1 protocol (tests 1b-4b): bundled DeepCEL0 (each frame scaled by its own "
                         "range, as before 2026-11-29)",
    "paper_table1_range_floor.json": "Paper Table 1 protocol: bundled DeepCEL0 with each frame's range at least 18 "
                                     "noise standard deviations (the default since 2026-11-29; DeepCEL0 rows only)",
    "paper_table1_gpu.json": "Paper Table 1 protocol: DeepCEL0 and Deep-STORM trained with the paper's schedule (H100)",
    "paper_table1_budget_matched.json": "Paper Table 1 protocol: DeepCEL0 and Deep-STORM, 8 epochs each (CPU)",
    "paper_table1_paper_protocol.json": "Paper Table 1 protocol: the bundled DeepCEL0 fine-tuned on the paper's "
                                        "Gaussian noise on the CPU (for this test, not bundled; docs/benchmarks.md)",
    "paper_table1_protocol_gpu.json": "Paper Table 1 protocol: that model fine-tuned further on an H200 on 150,000 "
                                      "fresh patches (for this test, not bundled; benchmarks/gpu_speed_table1.sh)",
    "paper_table1_protocol_fit.json": "Paper Table 1 protocol: that H200 model, plain and with the positions "
                                      "fitted on the frames (CPU; paper_table1.py --fit-positions)",
    "paper_table1_cel0_full_gpu.json": "Paper Table 1 protocol on an H200: CEL0 on all 361 frames, lambda from the "
                                       "paper's 30-value sweep on 8 frames (benchmarks/gpu_speed_table1.sh)",
    "paper_table1_chebyshev.json": "Paper Table 1 protocol, tolerance as a square window (Chebyshev distance; "
                                   "a sensitivity analysis): bundled DeepCEL0",
    "paper_table1_paper_protocol_chebyshev.json": "Paper Table 1 protocol, tolerance as a square window: the "
                                                  "DeepCEL0 fine-tuned on the paper's Gaussian noise",
}

#: result files of benchmarks/in_domain.py and their section titles
IN_DOMAIN_RESULTS = {
    "in_domain.json": "Simulated stacks: uniform emitters vs filaments",
    "in_domain_orientations.json": "Simulated stacks: the bundled model with and without orientation averaging",
}
#: result files of benchmarks/fit_positions.py and their section titles
FIT_RESULTS = {
    "fit_positions.json": "Positions fitted on the camera frames (bundled DeepCEL0)",
    "fit_positions_10_iterations.json": "Positions fitted on the camera frames, 10 steps instead of 4",
    "fit_positions_8_orientations.json": "Positions fitted on the camera frames, starting from orientation averaging",
}
#: result files of benchmarks/snr_sweep.py and their section titles
SNR_RESULTS = {
    "snr_sweep.json": "Paper Table 1 protocol at more noise levels",
    "snr_sweep_mean_snr.json": "Paper Table 1 protocol with the SNR read as mean signal over noise std "
                               "(the paper's 10/12/15 dB -> 15.57/17.57/20.57 dB by Eq. (14))",
}


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(v, digits=2) -> str:
    return "n/a" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def table_head(columns: list[str]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]


def section(title: str, paragraphs: list[str], columns: list[str]) -> list[str]:
    """A section's title, its paragraphs (machine, command, ...) and its table's head."""
    out = [f"## {title}", ""]
    for paragraph in paragraphs:
        out += [paragraph, ""]
    return out + table_head(columns)


def isbi_section(d: dict, title: str, figures: bool = False) -> list[str]:
    read_out = d.get("read_out", "3 x 3 centre of mass (the read-out until 2026-11-28)")
    out = section(title, [f"Frames {d['frames']}; machine: {d['machine']}.", f"Command: `{d['command']}`",
                          f"Networks' maxima placed by: {read_out}."],
                  ["method", "frames", "tol nm", "Jaccard %", "sensitivity %", "precision %", "RMSE nm",
                   "efficiency %", "frames/s"])
    for name, r in d["results"].items():
        if "scores" not in r:
            continue
        for s in r["scores"]:
            out.append(f"| {name} | {r.get('frames', d['frames'])} | {s['tol_nm']:.0f} | {fmt(s['jaccard'])} | "
                       f"{fmt(s['sensitivity'])} | "
                       f"{fmt(s['precision'])} | {fmt(s['rmse_nm'])} | {fmt(s['efficiency'])} | "
                       f"{fmt(r.get('frames_per_s'))} |")
    out.append("")
    if figures:
        out += ["![Renderings of the whole stack](images/isbi_renderings.png)", "",
                "![Jaccard against tolerance](images/isbi_jaccard_vs_tolerance.png)", ""]
    return out


#: the matching rule of result files written before metrics.MATCHING_RULE was recorded
OLD_MATCHING = ("inclusive: pairs exactly at the tolerance counted, the rule until 2026-11-28 (on this protocol's "
                "pixel-centred ground truth that added 5.1-5.8 points at 50 nm to the bundled DeepCEL0 and 1.4-3.4 "
                "to CEL0; benchmarks.md, the matching rule)")


def matching(d: dict) -> str:
    """How the file's numbers were scored and, for the networks, read out."""
    read_out = d.get("read_out", "3 x 3 centre of mass (the read-out until 2026-11-28)")
    return f"Matching: {d.get('matching', OLD_MATCHING)}. Networks' maxima placed by: {read_out}."


def table1_section(d: dict, title: str) -> list[str]:
    distance = d.get("distance", "euclidean")
    with_cel0 = any(name.startswith("CEL0") for methods in d["tests"].values() for name in methods)
    cel0 = f", CEL0 frames {d['cel0_frames']}" if with_cel0 else ""  # (the default, for runs without CEL0)
    # the machine that scored the models (a section's title may name the one that trained them)
    out = section(title, [d["protocol"] + f"; tolerances measured as {distance} distances. " + matching(d),
                   f"DeepCEL0/Deep-STORM frames {d['deep_frames']}{cel0}; scored on: {d['machine']}.",
                   f"Command: `{d['command']}`"],
                  ["test", "method", "J50", "J100", "J150", "sens50", "spec50", "RMSE50 nm", "eff50 %",
                   "paper J50/J100/J150, sens, spec"])
    for test, methods in d["tests"].items():
        for name, r in methods.items():
            p = d["paper"].get(test, {}).get(name.split(" (")[0])  # "DeepCEL0 (8 orientations)" -> "DeepCEL0"
            ptxt = (f"{p['jaccard_50']:.2f}/{p['jaccard_100']:.2f}/{p['jaccard_150']:.2f}, "
                    f"{p['sensitivity_50']:.2f}, {p['specificity_50']:.2f}") if p else ""
            lam = f" (lambda {r['lam']:.3g})" if "lam" in r else ""
            out.append(f"| {test} | {name}{lam} | {fmt(r['jaccard_50'])} | {fmt(r['jaccard_100'])} | "
                       f"{fmt(r['jaccard_150'])} | {fmt(r['sensitivity_50'])} | {fmt(r['specificity_50'], 3)} | "
                       f"{fmt(r['rmse_nm'])} | {fmt(r['efficiency'])} | {ptxt} |")
    out.append("")
    return out


def snr_section(d: dict, title: str) -> list[str]:
    out = section(title, [
        d["protocol"] + ". " + matching(d),
        f"DeepCEL0 frames {d['deep_frames']}, CEL0 frames {d['cel0_frames']} (lambda from a sweep of "
        f"{d['cel0_sweep']['lams']} values on {d['cel0_sweep']['frames']} frames); machine: {d['machine']}.",
        f"Command: `{d['command']}`"], ["SNR dB", "method", "J50", "J100", "J150", "sens50", "RMSE nm"])
    rows = [(snr, name, r) for snr, methods in d["snr_db"].items() for name, r in methods.items()]
    rows += [(snr, f"paper {name}", r) for snr, methods in d["paper"].items() for name, r in methods.items()]
    for snr, name, r in sorted(rows, key=lambda x: float(x[0])):
        lam = f" (lambda {r['lam']:.3g})" if "lam" in r else ""
        out.append(f"| {snr} | {name}{lam} | {fmt(r['jaccard_50'])} | {fmt(r['jaccard_100'])} | "
                   f"{fmt(r['jaccard_150'])} | {fmt(r['sensitivity_50'])} | {fmt(r.get('rmse_nm'))} |")
    out.append("")
    return out


def close_pairs_section(d: dict) -> list[str]:
    out = section("Close molecules (tests 1a-3a)", [f"SNR {d['snr_db']:g} dB; command: `{d['command']}`"],
                  ["test", *next(iter(d["results"].values())).keys()])
    for test, r in d["results"].items():
        out.append(f"| {test} | " + " | ".join(
            ("resolved" if v["resolved"] else "not resolved") + f" ({v['localizations_near_centre']})"
            for v in r.values()) + " |")
    out += ["", "(in brackets: localizations within 250 nm of the centre)", ""]
    out += [f"![Test {t}](images/close_pairs_{t}.png)" for t in d["results"]] + [""]
    return out


def in_domain_section(d: dict, title: str) -> list[str]:
    out = section(title,
                  [f"{d['n_frames']} frames per scene; machine: {d['machine']}.", f"Command: `{d['command']}`"],
                  ["model", "scene", "J50 %", "sensitivity %", "precision %", "RMSE nm",
                   "localizations / GT per frame"])
    for model, scenes in d["results"].items():
        for scene, r in scenes.items():
            out.append(f"| {model} | {scene} | {fmt(r['jaccard'])} | {fmt(r['sensitivity'])} | {fmt(r['precision'])} "
                       f"| {fmt(r['rmse_nm'])} | {r['locs_per_frame']} / {r['gt_per_frame']} |")
    out.append("")
    return out


def fit_section(d: dict, title: str) -> list[str]:
    out = section(title,
                  [f"Model: {d['model']}, {d['orientations']} orientation(s), at most {d['iterations']} fit steps "
                   f"per frame; machine: {d['machine']}.", f"Command: `{d['command']}`",
                   "Calibration: median |error| / uncertainty over x and y, divided by 0.674 (1: the "
                   "uncertainty describes the errors; > 1: the errors are larger)."],
                  ["scene", "positions", "J50 %", "RMSE nm", "s/frame (network or fit)", "median uncertainty nm",
                   "calibration"])
    for scene, row in d["scenes"].items():
        for label, r in row.items():
            if not isinstance(r, dict):
                continue
            seconds = r.get("fit_s_per_frame", row["network_s_per_frame"])
            out.append(f"| {scene} | {label} | {fmt(r['jaccard'])} | {fmt(r['rmse_nm'])} | {seconds} "
                       f"| {fmt(r.get('median_uncertainty_nm'))} | {fmt(r.get('uncertainty_calibration'))} |")
    out.append("")
    return out


def candidates_section(d: dict) -> list[str]:
    """The bundled model's candidates (benchmarks/gpu_next.sh): each scored on ISBI 2013 and
    on the simulated scenes of in_domain.py, beside the model bundled before them."""
    runs = d["runs"]
    scenes = list(next(iter(runs.values()))["in_domain"]["results"])
    out = section("Candidates for the bundled model (H100)",
                  [d["note"] + f"; machine: {d['machine']}.", "Commands: " + "; ".join(f"`{c}`" for c in d["commands"]),
                   "Jaccard at 50 nm (RMSE nm for ISBI 2013); the scenes: 30 simulated frames each, plain maps."],
                  ["model", "ISBI 2013", "ISBI 2013, 8 orientations", *scenes])
    for name, r in runs.items():
        isbi = r["isbi"]["results"]
        plain, averaged = (isbi[key]["scores"][0] for key in ("DeepCEL0", "DeepCEL0 (8 orientations)"))
        out.append(f"| {name} | {fmt(plain['jaccard'])} ({fmt(plain['rmse_nm'])}) | "
                   f"{fmt(averaged['jaccard'])} ({fmt(averaged['rmse_nm'])}) | "
                   + " | ".join(fmt(r["in_domain"]["results"][scene]["jaccard"]) for scene in scenes) + " |")
    out.append("")
    return out


def scaling_run(s: dict) -> str:
    """What a scaling run of benchmarks/speed.py did (runs before 2026-11-28 name nothing)."""
    mode = s.get("mode", "default")
    return f"{mode} ({s['prefetch_workers']} prefetch threads)" if mode == "default" and "prefetch_workers" in s else mode


def speed_section(d: dict) -> list[str]:
    r = d["results"]
    out = section(f"Speed ({r['device']})", [f"Machine: {d['machine']}.", f"Command: `{d['command']}`"],
                  ["what", "value"])
    for k, v in r.items():
        if k in ("device", "scaling", "cel0"):
            continue
        out.append(f"| {k.replace('_', ' ')} | {v} |")
    cel0 = r.get("cel0", {})
    for batch, c in cel0.items():
        if not isinstance(c, dict):
            continue
        out.append(f"| CEL0 (lambda {cel0.get('lam', 'n/a')}) {batch.replace('_', ' ')}: s/frame | {c['seconds_per_frame']} (outer iterations "
                   f"{c['outer_iterations']}) |")
    if r.get("scaling"):
        out += ["", *table_head(["frames", "run", "seconds", "frames/s", "peak RSS MB"])]
        out += [f"| {s['frames']} | {scaling_run(s)} | {s['seconds']} | {s['frames_per_s']} | {s['peak_rss_mb']} |"
                for s in r["scaling"]]
    out.append("")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"page to write (default {OUT.relative_to(REPO)})")
    args = parser.parse_args()
    lines = ["# Results", "",
             "Generated by `python benchmarks/make_results_page.py` from the JSON files in "
             "`benchmarks/results/`; each section names the command that produced its numbers. "
             "Percentages in %. See [benchmarks.md](benchmarks.md) for the discussion.", ""]
    for name, title in ISBI_RESULTS.items():
        if (d := load(name)):
            lines += isbi_section(d, title, figures=name == "isbi_original.json")
    for name, title in TABLE1_RESULTS.items():
        if (d := load(name)):
            lines += table1_section(d, title)
    for name, title in SNR_RESULTS.items():
        if (d := load(name)):
            lines += snr_section(d, title)
    for name, title in IN_DOMAIN_RESULTS.items():
        if (d := load(name)):
            lines += in_domain_section(d, title)
    for name, title in FIT_RESULTS.items():
        if (d := load(name)):
            lines += fit_section(d, title)
    if (d := load("gpu_bundled_candidates.json")):
        lines += candidates_section(d)
    if (d := load("close_pairs.json")):
        lines += close_pairs_section(d)
    for path in sorted(RESULTS.glob("speed_*.json")):
        lines += speed_section(json.loads(path.read_text()))
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
