"""``detect``'s options for videos, streams and cameras, and its run over them: one line
per source, Ctrl-C / SIGTERM ending the run cleanly."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fasterrcnn.cli.common import CLIError, non_negative, positive
from fasterrcnn.data.sources import MISSING_PYAV, has_pyav
from fasterrcnn.inference.protocol import BatchDetector
from fasterrcnn.inference.tracking import ByteTracker, check_tracking


def add_video_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("videos, streams and cameras")
    group.add_argument(
        "--camera", type=non_negative, action="append", default=[], metavar="N",
        help="also read the local camera N (/dev/videoN; repeatable)",
    )  # fmt: skip
    group.add_argument(
        "--frame-stride", type=positive, default=1, metavar="N",
        help="run every N-th frame (default 1)",
    )  # fmt: skip
    group.add_argument(
        "--start", type=float, default=0.0, metavar="SEC",
        help="start each video file at SEC seconds (default 0)",
    )  # fmt: skip
    group.add_argument(
        "--max-frames", type=positive, metavar="N", help="stop each video after N frames"
    )
    group.add_argument(
        "--track", action="store_true",
        help="give each detection a track id stable across frames (ByteTrack), in the JSON "
        "lines and drawn after the label",
    )  # fmt: skip
    group.add_argument(
        "--stream-timeout", type=float, default=10.0, metavar="SEC",
        help="a stream or camera that gives no frame for SEC seconds is an error (default 10)",
    )  # fmt: skip


def check_video_options(args: argparse.Namespace) -> None:
    if args.start < 0:
        raise CLIError(f"--start must be at least 0, not {args.start}")
    if args.stream_timeout <= 0:
        raise CLIError(f"--stream-timeout must be above 0, not {args.stream_timeout}")
    if args.track:
        try:
            check_tracking()
        except ImportError as err:
            raise CLIError(f"--track: {err}") from None


def video_stem(source: Path | str | int, taken: set[str]) -> str:
    """The name of a source's outputs: a file's stem, ``camera<N>``, or a stream URL's last
    path part (else its host), made unique among ``taken`` (which it joins)."""
    if isinstance(source, int):
        stem = f"camera{source}"
    elif isinstance(source, Path):
        stem = source.stem
    else:
        parts = [p for p in source.split("://", 1)[-1].split("?")[0].split("/") if p]
        stem = Path(parts[-1]).stem if len(parts) > 1 else parts[0].replace(":", "_")
    unique, n = stem, 1
    while unique in taken:
        n += 1
        unique = f"{stem}_{n}"
    taken.add(unique)
    return unique


def detect_videos(
    model: BatchDetector, sources: list[Path | str | int], out: Path, args: argparse.Namespace
) -> bool:
    """Detect in each video, stream and camera in turn, one line each; whether any failed.
    Ctrl-C / SIGTERM ends the current one cleanly and the command (status 0)."""
    if not has_pyav():
        raise CLIError(MISSING_PYAV)
    from fasterrcnn.inference.video_run import VideoError, detect_video, open_video

    failed = False
    taken: set[str] = set()
    with stop_on_sigterm():
        for source in sources:
            try:
                with open_video(
                    source, stride=args.frame_stride, start=args.start,
                    max_frames=args.max_frames, timeout=args.stream_timeout,
                ) as reader:  # fmt: skip
                    tracker = None
                    if args.track:
                        rate = (reader.info.fps or 25.0) / reader.stride
                        tracker = ByteTracker(frame_rate=rate)
                    run = detect_video(
                        model, reader, out, video_stem(source, taken),
                        batch_size=args.batch_size, score_threshold=args.score_threshold,
                        draw=not args.no_draw, tracker=tracker,
                    )  # fmt: skip
            except VideoError as err:
                print(f"fasterrcnn: skipped: {err}", file=sys.stderr)
                failed = True
                continue
            except OSError as err:
                raise CLIError(f"--out {out}: {err}") from None
            if run.outputs:
                rate = run.frames / run.seconds if run.seconds else 0.0
                written = ", ".join(str(path) for path in run.outputs)
                dropped = f", {run.dropped} dropped" if run.dropped else ""
                print(f"{run.source}: {run.frames} frame(s){dropped}, {run.detections} "
                      f"detection(s) written to {written} ({rate:.2f} frames/s)")  # fmt: skip
            elif run.error is None:
                print(f"{run.source}: no frame came, nothing written")
            if run.error is not None:  # with nothing written, the source was skipped
                skipped = "" if run.outputs else "skipped: "
                print(f"fasterrcnn: {skipped}{run.error}", file=sys.stderr)
                failed = True
            if run.interrupted:
                print("fasterrcnn: stopped", file=sys.stderr)
                break
    return failed


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (as Ctrl-C does) while inside, so that a stream
    stopped by a service manager closes its outputs too."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
