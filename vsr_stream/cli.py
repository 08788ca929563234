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
        click.echo(f"error: interrupted ({e or 'Ctrl-C'}); the pipeline was stopped "
                   "(a file output was not kept; a live recording keeps what was written)", err=True)
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
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, errors only.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def upscale(input: str, output: str, scale: str | None, config: str | None, codec, crf, bitrate, enc_preset,
            pix_fmt, lossless, overwrite, transport, port, max_frames, max_duration_s, no_drop, as_json, quiet,
            verbose) -> None:
    """Upscale INPUT into OUTPUT.

    INPUT is a video file, an image, a folder of images, an image sequence
    ('frames/*.png', 'img_%04d.png') or a live stream (rtsp://user:pass@host/path: reconnects,
    drops frames at ingest to keep latency bounded; the 'live' preset by default). OUTPUT is a
    video file (container from the extension; written under a temporary name and renamed on
    success; a live recording is written in place as .mkv or .ts and kept), an rtsp:// URL to
    publish to, or a folder (ending in '/') of PNGs. Ctrl-C or SIGTERM on a live input ends it
    and finalises the output.
    """
    from vsr_stream import api

    _setup_logging(verbose, quiet)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    overrides = _encode_overrides(codec, crf, bitrate, enc_preset, pix_fmt, lossless, overwrite)
    if transport or port is not None:
        overrides["transport"] = {k: v for k, v in {"mode": transport, "port": port}.items() if v is not None}
    decode = {"max_frames": max_frames, "max_duration_s": max_duration_s, "live_policy": "block" if no_drop else None}
    if any(v is not None for v in decode.values()):
        overrides["decode"] = {k: v for k, v in decode.items() if v is not None}
    bar = None if quiet else _progress_bar()
    try:
        report = api.upscale(input, output, scale=int(scale) if scale else None, config=config,
                             overrides=overrides, progress=bar.update if bar else None)
    except (VsrError, OSError, KeyboardInterrupt) as e:
        _fail(e)
    finally:
        if bar:
            bar.close()
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary())


class _progress_bar:
    """tqdm bar fed with (frames done, total frames or None)."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(unit="frame", dynamic_ncols=True, file=sys.stderr, desc="upscale")

    def update(self, done: int, total: int | None) -> None:
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
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
@click.option("--config", "config", metavar="FILE|PRESET", help="Pipeline config (default: built-in defaults).")
@click.option("--model", default=None, help="Naive loop's model (default: the heaviest branch's model).")
@click.option("--frames", type=int, default=24, show_default=True, help="Frames of the generated clip.")
@click.option("--size", default="320x180", show_default=True, help="WIDTHxHEIGHT of the generated clip.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Runs of each; the median is reported.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench(input: str | None, scale: str, config: str | None, model: str | None, frames: int, size: str,
          repeats: int, as_json: bool) -> None:
    """Compare the pipeline with a naive whole-frame loop on the same clip (fps and ratio)."""
    from vsr_stream.bench import run_bench

    _setup_logging(0, True)
    try:
        result = run_bench(input, scale=int(scale), config=config, model=model, frames=frames, size=size,
                           repeats=repeats)
    except (VsrError, OSError, KeyboardInterrupt) as e:
        _fail(e)
    click.echo(json.dumps(result, indent=2) if as_json else _bench_table(result))


def _bench_table(r: dict[str, Any]) -> str:
    return (f"clip: {r['clip']} ({r['frames']} frames, {r['size']}, x{r['scale']})\n"
            f"pipeline   : {r['pipeline_fps']:.2f} fps (median of {r['repeats']})\n"
            f"naive loop : {r['naive_fps']:.2f} fps with {r['naive_model']} on whole frames\n"
            f"ratio      : {r['ratio']:.2f}x")


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
