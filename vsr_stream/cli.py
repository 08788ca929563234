"""Command line: a thin shell over :mod:`vsr_stream.api`.

Exit codes: 0 success, 1 a run failed, 2 bad arguments or config, 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from typing import Any

import click

from vsr_stream.errors import Cancelled, ConfigError, VsrError

log = logging.getLogger("vsr_stream")

_CODEC_HELP = "Video encoder (e.g. libx264, libx265, ffv1, libx264rgb, h264_nvenc); default depends on the container."


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")


def _fail(e: BaseException) -> None:
    if isinstance(e, KeyboardInterrupt):
        click.echo(f"error: interrupted ({str(e) or 'Ctrl-C'}); the pipeline was stopped "
                   "(a file output not yet finished was not kept; a live recording keeps what was written)", err=True)
        sys.exit(130)
    click.echo(f"error: {e}", err=True)
    sys.exit(130 if isinstance(e, Cancelled) else 2 if isinstance(e, ConfigError) else 1)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vsr-stream")
def main() -> None:
    """vsr-stream: streaming video super-resolution.

    Frames are cut into overlapping tiles, each tile is routed by its texture (TVAT) to a
    branch network sized for it, and the upscaled tiles are blended back into frames.
    Audio, subtitles and other streams are copied untouched.
    """


def _encode_overrides(codec, crf, bitrate, preset, pix_fmt, lossless, overwrite) -> dict[str, Any]:
    enc = {"codec": codec, "crf": crf, "bitrate_kbps": bitrate, "preset": preset, "pix_fmt": pix_fmt}
    enc = {k: v for k, v in enc.items() if v is not None}
    if lossless:
        enc["lossless"] = True
    if overwrite:
        enc["overwrite"] = True
    return {"encode": enc} if enc else {}


@main.command()
@click.argument("input")
@click.argument("output")
@click.option("--scale", type=click.Choice(["2", "3", "4"]), help="Upscaling factor (default: the config's, 4).")
@click.option("--config", "config", metavar="FILE|PRESET",
              help="TOML config file or preset name (see `vsr-stream presets`). Default: built-in defaults.")
@click.option("--codec", help=_CODEC_HELP)
@click.option("--crf", type=int, help="Constant rate factor (x264/x265: 0-51, lower is better).")
@click.option("--bitrate", type=int, metavar="KBPS", help="Target video bitrate in kbit/s (instead of --crf).")
@click.option("--preset", "enc_preset", help="Encoder speed preset (e.g. veryfast, medium, slow).")
@click.option("--pix-fmt", help="Output pixel format (e.g. yuv420p, yuv420p10le, yuv444p).")
@click.option("--lossless", is_flag=True, help="Lossless output for measurement (ffv1 in mkv, libx264rgb qp 0 in mp4).")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--transport", type=click.Choice(["inproc", "ipc", "tcp", "fused"]),
              help="Where stages run: threads (inproc), processes (ipc), processes on TCP ports (tcp), or one loop "
              "in one process with frames kept on the GPU between stages (fused).")
@click.option("--port", type=int, help="tcp transport: directory port external workers connect to.")
@click.option("--frames", "max_frames", type=click.IntRange(min=1), help="Stop after N frames.")
@click.option("--duration", "max_duration_s", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop after SECONDS of the input's timeline.")
@click.option("--no-drop", is_flag=True,
              help="Live input: never drop frames; block and fall behind when upscaling is slower than the stream.")
@click.option("--wait-for-stream", "wait_for_stream_s", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Live input: keep trying to open the stream for up to SECONDS (a camera still booting); "
              "default 0 fails at once. A refused login is never retried.")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, errors only.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def upscale(input: str, output: str, scale: str | None, config: str | None, codec, crf, bitrate, enc_preset,
            pix_fmt, lossless, overwrite, transport, port, max_frames, max_duration_s, no_drop, wait_for_stream_s,
            as_json, quiet, verbose) -> None:
    """Upscale INPUT into OUTPUT.

    INPUT is a video file, an image, a folder of images, an image sequence
    ('frames/*.png', 'img_%04d.png') or a live stream (rtsp://user:pass@host/path: reconnects,
    drops frames at ingest to keep latency bounded; the 'live' preset by default). OUTPUT is a
    video file (container from the extension; written under a temporary name and renamed on
    success; a live recording is written in place as .mkv or .ts and kept), an rtsp:// URL to
    publish to, or a folder (ending in '/') of PNGs. Ctrl-C or SIGTERM on a live input ends it
    and finalises the output.
    """
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    _setup_logging(verbose, quiet)
    overrides = _encode_overrides(codec, crf, bitrate, enc_preset, pix_fmt, lossless, overwrite)
    if transport or port is not None:
        overrides["transport"] = {k: v for k, v in {"mode": transport, "port": port}.items() if v is not None}
    decode = {"max_frames": max_frames, "max_duration_s": max_duration_s, "live_policy": "block" if no_drop else None,
              "wait_for_stream_ms": None if wait_for_stream_s is None else round(wait_for_stream_s * 1000)}
    if any(v is not None for v in decode.values()):
        overrides["decode"] = {k: v for k, v in decode.items() if v is not None}
    bar = None
    try:
        from vsr_stream import api  # loads torch (seconds): a Ctrl-C meanwhile is an interrupt like any other

        bar = None if quiet else _progress_bar()
        report = api.upscale(input, output, scale=int(scale) if scale else None, config=config,
                             overrides=overrides, progress=bar.update if bar else None)
    except (VsrError, OSError, KeyboardInterrupt) as e:
        if bar:
            bar.close()  # before the message, so that the error is the last line
        _fail(e)
    if bar:
        bar.close()
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary())


class _progress_bar:
    """tqdm bar fed with (frames done, total frames or None); shown from the first update, so a run
    that fails before its first frame (a missing file, a bad config) prints only its error."""

    def __init__(self) -> None:
        self.bar: Any = None

    def update(self, done: int, total: int | None) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(unit="frame", dynamic_ncols=True, file=sys.stderr, desc="upscale")
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@main.command()
@click.option("--connect", "address", required=True, metavar="tcp://HOST:PORT",
              help="The pipeline's directory address (its --port, default 5555).")
@click.option("--class", "cls", type=int, required=True, help="Class K whose tiles this worker upscales.")
@click.option("--device", help="Torch device for this worker (default: the pipeline's branch setting).")
@click.option("--timeout-ms", type=int, default=10_000, show_default=True, help="How long to wait for the pipeline.")
@click.option("-v", "--verbose", count=True, help="More log output.")
def worker(address: str, cls: int, device: str | None, timeout_ms: int, verbose: int) -> None:
    """Join a running tcp-mode pipeline as an extra branch worker for class K.

    The worker asks the pipeline's directory for its addresses and the run's config, builds
    the same branch model, and serves tiles until the run ends. There is no authentication
    on tcp:// yet: expose the ports only on a trusted network.
    """
    from vsr_stream.runtime.workers import run_external_worker

    _setup_logging(verbose, False)
    try:
        run_external_worker(address, cls, device=device, timeout_ms=timeout_ms)
    except (VsrError, OSError, KeyboardInterrupt) as e:
        _fail(e)


@main.command()
def models() -> None:
    """List the registered models."""
    from vsr_stream.models import descriptors

    for d in descriptors():
        scales = "/".join(f"x{s}" for s in d.scales)
        kind = "learned" if d.learned else "fixed"
        click.echo(f"{d.name:<12} {scales:<10} {kind:<8} radius {d.receptive_radius_px} px  {d.description}")


@main.command()
def presets() -> None:
    """List the config presets shipped with the package (use with --config NAME)."""
    from vsr_stream.resources import preset_names, preset_path

    for name in preset_names():
        first = preset_path(name).read_text(encoding="utf-8").splitlines()[:1]
        click.echo(f"{name:<12} {first[0].lstrip('# ') if first else ''}")


@main.command()
@click.argument("output", default="example.mp4")
@click.option("--frames", type=int, default=48, show_default=True, help="Frames to generate.")
@click.option("--size", default="320x180", show_default=True, help="WIDTHxHEIGHT of the clip.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def example(output: str, frames: int, size: str, overwrite: bool) -> None:
    """Write the small built-in example clip (moving texture + a sine tone) to OUTPUT."""
    from pathlib import Path

    from vsr_stream.media.synth import write_clip

    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        _fail(ConfigError(f"--size must be WIDTHxHEIGHT, got {size!r}"))
    if Path(output).exists() and not overwrite:
        _fail(ConfigError(f"{output} exists; pass --overwrite to replace it"))
    click.echo(str(write_clip(output, width=w, height=h, frames=frames)))


@main.command()
@click.argument("input", required=False)
@click.option("--scale", type=click.Choice(["2", "3", "4"]), default="4", show_default=True)
@click.option("--config", "config", metavar="FILE|PRESET", help="Pipeline config (default: the default preset).")
@click.option("--presets", metavar="LIST",
              help="Comma-separated configs to compare on the same clip (instead of --config).")
@click.option("--model", default=None, help="Naive loop's model (default: each config's hardest branch's).")
@click.option("--clip", "clip", type=click.Choice(["camera", "static"]), default="camera", show_default=True,
              help="Generated clip: a panning, zooming camera, or a static camera with moving objects and noise.")
@click.option("--images", metavar="DIR",
              help="Pictures the generated clip is made of, laid side by side at their own resolution "
                   "(default: built-in test pictures).")
@click.option("--frames", type=int, default=24, show_default=True, help="Frames of the generated clip.")
@click.option("--size", default="320x180", show_default=True, help="LR WIDTHxHEIGHT of the generated clip.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Runs of each; the median is reported.")
@click.option("--memory-scaling", is_flag=True, help="Also run a 10x longer clip and report both memory peaks.")
@click.option("--plot", metavar="PNG", help="Write a plot of fps against PSNR (needs matplotlib).")
@click.option("--tile-sweep", is_flag=True,
              help="Instead: time each branch of the config on one --size frame, whole and tiled at several tile "
              "sizes and batch sizes (what tiling costs; chooses tile_px and max_batch).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench(input: str | None, scale: str, config: str | None, presets: str | None, model: str | None, clip: str,
          images: str | None, frames: int, size: str, repeats: int, memory_scaling: bool, plot: str | None,
          tile_sweep: bool, as_json: bool) -> None:
    """Measure the pipeline against a naive whole-frame loop on one clip: fps and their ratio,
    Y-PSNR against the HR frames, time per stage, the branches' multiply-adds per second
    against a matmul peak, and peak memory. Each run is a fresh process.
    """
    from vsr_stream.bench import run_bench

    _setup_logging(0, True)
    if tile_sweep:
        _tile_sweep(config, int(scale), size, repeats, as_json)
        return
    try:
        if config and presets:
            raise ConfigError("give --config or --presets, not both")
        names = [p.strip() for p in presets.split(",") if p.strip()] if presets else [config or "default"]
        result = run_bench(input, scale=int(scale), presets=names, model=model, clip=clip, images=images,
                           frames=frames, size=size, repeats=repeats, memory_scaling=memory_scaling, plot=plot)
    except (VsrError, OSError, KeyboardInterrupt) as e:
        _fail(e)
    click.echo(json.dumps(result, indent=2) if as_json else _bench_table(result))


def _tile_sweep(config: str | None, scale: int, size: str, repeats: int, as_json: bool) -> None:
    from vsr_stream.api import resolve_config
    from vsr_stream.bench.clips import parse_size
    from vsr_stream.bench.tiles import sweep, sweep_table

    try:
        w, h = parse_size(size)
        cfg = resolve_config(config, scale)
        results = [sweep(b, cfg.scale, (w, h), overlap_px=cfg.tiling.overlap_px, context_px=cfg.tiling.context_px,
                         repeats=repeats, allow_random=cfg.upscale.allow_random_weights)
                   for b in cfg.upscale.branches]
    except (VsrError, OSError, KeyboardInterrupt) as e:
        _fail(e)
    click.echo(json.dumps(results, indent=2) if as_json else "\n\n".join(map(sweep_table, results)))


def _bench_table(result: dict[str, Any]) -> str:
    c = result["clip"]
    lines = [f"clip: {c['kind']} {c['lr_size']} -> {c['hr_size']} (x{c['scale']}), {c['frames']} frames, "
             f"median of {result['repeats']}"]
    for r in result["presets"]:
        lines += ["", *_bench_preset_lines(r)]
    return "\n".join(lines)


def _bench_preset_lines(r: dict[str, Any]) -> list[str]:
    def num(v: float | None, fmt: str = ".2f") -> str:
        return "n/a" if v is None else format(v, fmt)

    stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stage_ms_per_frame"].items())
    peak = r["matmul_peak_gmacs_per_s"]
    share = r["branch_fraction_of_peak"] or {}
    lines = [f"[{r['config']}] transport {r['transport']}, precision {'/'.join(r['precision'])}, "
             f"tiles per class {r['tiles_per_class']}" + (f", reused {r['tiles_reused']}" if r["tiles_reused"] else ""),
             f"  pipeline   : {r['pipeline_fps']:.2f} fps, Y-PSNR {num(r['pipeline_psnr_y_db'])} dB",
             f"  naive loop : {r['naive_fps']:.2f} fps, Y-PSNR {num(r['naive_psnr_y_db'])} dB "
             f"({r['naive_model']}, {r['naive_precision']}, {r['naive_layout'] or 'default layout'}, whole frames)",
             f"  ratio      : {r['ratio']:.2f}x, PSNR difference {num(r['psnr_delta_db'], '+.3f')} dB",
             f"  stages     : {stages} ms/frame; ideal {num(r['ideal_fps'])} fps, efficiency {num(r['efficiency'])}",
             f"  branches   : {num(r['branch_gmacs_per_s'])} GMAC/s; matmul peak fp32 {peak['fp32']:.1f}, "
             f"bf16 {peak['bf16']:.1f}{'' if peak['bf16_native'] else ' (emulated)'} GMAC/s "
             f"({peak['threads']} threads) -> {num(share.get('fp32'), '.0%')} / {num(share.get('bf16'), '.0%')} of peak",
             f"  memory     : peak RSS {r['peak_rss_mib']:.0f} MiB (naive {r['naive_peak_rss_mib']:.0f} MiB)"]
    if r["peak_rss_children_mib"]:
        lines[-1] += f", stage processes up to {r['peak_rss_children_mib']:.0f} MiB each"
    if r["memory_scaling"]:
        m = r["memory_scaling"]
        lines[-1] += f"; {m['frames']} frames: {m['peak_rss_mib']:.0f} MiB ({m['growth']:.2f}x"
        lines[-1] += f", {m['growth_in_run']:.2f}x in one run, {m['growth_second_half']:.2f}x over its second half)" \
            if "growth_in_run" in m else ")"
    return lines


@main.command()
@click.argument("config", metavar="CONFIG")
@click.option("--steps", type=int, help="Override every branch's steps (e.g. a short trial).")
@click.option("--sequential", is_flag=True, help="Train the branches one after another instead of in parallel.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.option("-v", "--verbose", count=True, help="More log output.")
def train(config: str, steps: int | None, sequential: bool, quiet: bool, verbose: int) -> None:
    """Train the branch networks described by CONFIG (a TOML file; see configs/train/).

    Patches are sorted into classes by TVAT at quantiles of the training data; each class's
    branch trains on its own patches, in parallel processes. Checkpoints are written as it goes:
    running the same command again resumes where it stopped.
    """
    from vsr_stream.config import load_train_config
    from vsr_stream.train.run import run_training

    _setup_logging(verbose, quiet)
    try:
        cfg = load_train_config(config)
        updates: dict[str, Any] = {"parallel": False} if sequential else {}
        if steps is not None:
            updates["branches"] = [b.model_copy(update={"steps": steps}) for b in cfg.branches]
        summary = run_training(cfg.model_copy(update=updates), show_progress=not quiet)
    except (VsrError, OSError, KeyboardInterrupt) as e:
        _fail(e)
    click.echo(json.dumps(summary, indent=2))


@main.command("train-classifier")
@click.argument("config", metavar="CONFIG")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("-v", "--verbose", count=True, help="More log output.")
def train_classifier(config: str, quiet: bool, verbose: int) -> None:
    """Train ClassSR's tile classifier on trained branches, as CONFIG describes (a TOML file).

    Stage 2 trains the classifier with the branches frozen, stage 3 all of them together, on
    ClassSR's L1 + Class-Loss + Average-Loss. The run writes a preset.toml that routes tiles by
    the classifier (classify.classifier). Running the same command again resumes where it stopped.
    """
    from vsr_stream.config import load_classifier_train_config
    from vsr_stream.train.classsr import train_classifier as run

    _setup_logging(verbose, quiet)
    try:
        summary = run(load_classifier_train_config(config), show_progress=not quiet)
    except (VsrError, OSError, KeyboardInterrupt) as e:
        _fail(e)
    click.echo(json.dumps(summary, indent=2))


@main.command()
@click.argument("config", metavar="CONFIG")
@click.option("--branch", type=int, default=0, show_default=True, help="Which branch (class) of the run.")
@click.option("--as", "stem", required=True, metavar="NAME", help="File name to ship as (configs refer to it as @NAME).")
@click.option("--dest", type=click.Path(file_okay=False), help="Folder to write to (default: the package's weights).")
@click.option("--val-root", metavar="DIR", help="sr-val folder to score the card's numbers (default: the run's val_root).")
def ship(config: str, branch: int, stem: str, dest: str | None, val_root: str | None) -> None:
    """Copy a trained branch of the run CONFIG into the package with its model card."""
    from pathlib import Path

    from vsr_stream.config import load_train_config
    from vsr_stream.models.registry import SHIPPED_WEIGHTS_DIR
    from vsr_stream.train.card import ship as ship_branch

    _setup_logging(0, True)
    try:
        card = ship_branch(load_train_config(config), config, branch, stem,
                           Path(dest) if dest else SHIPPED_WEIGHTS_DIR, val_root)
    except (VsrError, OSError, KeyboardInterrupt) as e:
        _fail(e)
    click.echo(card.read_text())


@main.command("eval")
@click.option("--root", required=True, metavar="DIR", help="Folder with <SET>/x<S>/{LR,HR} (e.g. sr-val).")
@click.option("--set", "sets", multiple=True, default=("Set5", "Set14"), show_default=True, help="Sets to score.")
@click.option("--scale", type=click.Choice(["2", "3", "4"]), default="4", show_default=True)
@click.option("--method", type=click.Choice(["pipeline", "bicubic"]), default="pipeline", show_default=True,
              help="pipeline: the full tiled pipeline with --config; bicubic: MATLAB bicubic baseline.")
@click.option("--config", "config", metavar="FILE|PRESET", help="Pipeline config (default: built-in defaults).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--run", "train_run", metavar="TRAIN_CONFIG",
              help="Instead: score a per-class training run's snapshots, routed together, at each validation step.")
def evaluate(root: str, sets: tuple[str, ...], scale: str, method: str, config: str | None, as_json: bool,
             train_run: str | None) -> None:
    """Y-PSNR / Y-SSIM of upscaled LR images against HR, by the standard SR protocol."""
    from vsr_stream.quality.evaluate import run_eval

    _setup_logging(0, True)
    if train_run is not None:
        _routed(train_run, root, config)
        return
    try:
        results = run_eval(list(sets), int(scale), root, method, config=config)
    except (VsrError, OSError, KeyboardInterrupt) as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps({k: r.to_dict() for k, r in results.items()}, indent=2))
    else:
        for r in results.values():
            click.echo(r.table())


def _routed(train_run: str, root: str, config: str | None) -> None:
    from vsr_stream.config import load_config, load_train_config
    from vsr_stream.train.routed import routed_history

    try:
        tiling = load_config(config).tiling.model_dump() if config else None
        history = routed_history(load_train_config(train_run), root, tiling)
    except (VsrError, OSError, KeyboardInterrupt) as e:
        _fail(e)
    click.echo(json.dumps(history, indent=2))


if __name__ == "__main__":
    main()
