"""Video sources and the drawn output video: exact frames, indices and times from lossless
files; start, stride and max_frames; the H.264 writer read back; files told from images by
content; truncated, damaged and empty files; HTTP streams whole, stalled and refused; dropping
frames for a slow consumer; and no reader thread left behind."""

from __future__ import annotations

import gc
import shutil
import socket
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from helpers.videos import IMAGES, coco_frames, decode_all, pan_frames, serve_video, write_video

from fasterrcnn.data import video_writer
from fasterrcnn.data.video import (
    VideoError,
    VideoFrame,
    VideoInfo,
    VideoReader,
    VideoWriter,
    is_stream_url,
    is_video_file,
)

FRAMES = coco_frames()  # 10 RGB frames of 320x240
H264 = {"preset": "ultrafast", "g": "4"}  # a keyframe every 4 frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    twenty = FRAMES + FRAMES[::-1]
    faststart, fragmented = {"movflags": "+faststart"}, {"movflags": "frag_keyframe+empty_moov"}
    return {
        "png.avi": write_video(root / "png.avi", FRAMES, "png", "rgb24"),
        "ffv1.mkv": write_video(root / "ffv1.mkv", FRAMES, "ffv1", "bgr0"),
        "h264.mp4": write_video(root / "h264.mp4", twenty, "libx264", "yuv420p", H264, faststart),
        "frag.mp4": write_video(root / "frag.mp4", twenty, "libx264", "yuv420p", H264, fragmented),
        "mpeg4.avi": write_video(root / "mpeg4.avi", twenty, "mpeg4", "yuv420p"),
    }


def one_line(err: pytest.ExceptionInfo[VideoError]) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def read_until_error(source: str | Path, **kwargs: Any) -> tuple[list[VideoFrame], str]:
    """The frames a reader yields before its VideoError, and the error's message."""
    frames: list[VideoFrame] = []
    with pytest.raises(VideoError) as err, VideoReader(source, **kwargs) as reader:
        frames.extend(reader)
    return frames, one_line(err)


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("VideoReader")]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(cv2.PSNR(np.ascontiguousarray(a), np.ascontiguousarray(b)))


@pytest.mark.parametrize(("name", "count"), [("png.avi", 10), ("ffv1.mkv", None)])
def test_lossless_file_gives_every_frame_exactly(videos, name, count) -> None:
    with VideoReader(videos[name]) as reader:
        frames = list(reader)
    assert reader.info == VideoInfo(str(videos[name]), 320, 240, 10.0, count, False, Fraction(10))
    assert [f.index for f in frames] == list(range(10))
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(10)], abs=1e-3)
    for frame, expected in zip(frames, FRAMES, strict=True):
        assert frame.image.dtype == np.uint8 and frame.image.flags.c_contiguous
        assert np.array_equal(frame.image, expected)


@pytest.mark.parametrize(
    ("kwargs", "indices"),
    [
        ({"stride": 3}, [0, 3, 6, 9]),
        ({"max_frames": 3}, [0, 1, 2]),
        ({"start": 0.45, "stride": 2}, [5, 7, 9]),
        ({"start": 0.2, "stride": 2, "max_frames": 2}, [2, 4]),
        ({"start": 0.9}, [9]),
    ],
)
def test_stride_start_and_max_frames_pick_exact_frames(videos, kwargs, indices) -> None:
    with VideoReader(videos["png.avi"], **kwargs) as reader:
        frames = list(reader)
    assert [f.index for f in frames] == indices
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in indices], abs=1e-3)
    assert all(np.array_equal(f.image, FRAMES[f.index]) for f in frames)


def test_start_seeks_to_a_keyframe_and_decodes_on(videos) -> None:
    expected = decode_all(videos["h264.mp4"])
    with VideoReader(videos["h264.mp4"], start=1.3, stride=2) as reader:
        frames = list(reader)
    assert reader._seeked  # to the keyframe at 1.2 s: the index comes from the time
    assert [f.index for f in frames] == [13, 15, 17, 19]
    assert [f.time for f in frames] == pytest.approx([1.3, 1.5, 1.7, 1.9], abs=1e-3)
    assert all(np.array_equal(f.image, expected[f.index]) for f in frames)
    with pytest.raises(VideoError) as err, VideoReader(videos["h264.mp4"], start=5.0) as reader:
        list(reader)
    assert one_line(err) == f"{videos['h264.mp4']}: has no frames from 5 s on"


def test_writer_gives_h264_mp4_of_the_same_frames_rate_and_size(tmp_path) -> None:
    path, rate, pan = tmp_path / "out.mp4", Fraction(30000, 1001), pan_frames()
    with VideoWriter(path, rate, 320, 240) as writer:
        for rgb in pan:
            writer.write(rgb)
    assert writer.codec == "libx264" and writer.frames == 20
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height, stream.average_rate) == (320, 240, rate)
    decoded = decode_all(path)
    assert len(decoded) == 20
    for i, image in enumerate(decoded):  # in order: each matches its own frame, not the next
        assert psnr(image, pan[i]) > 30 > psnr(image, pan[(i + 1) % 20]) + 5
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: the index first


def test_writer_pads_odd_sizes_and_falls_back_to_mpeg4(tmp_path, monkeypatch) -> None:
    pan = pan_frames(10)
    odd = [rgb[:239, :319] for rgb in pan]
    with VideoWriter(tmp_path / "odd.mp4", 10.0, 319, 239) as writer:
        for rgb in odd:
            writer.write(np.ascontiguousarray(rgb))
    assert writer.encoded_size == (320, 240)
    decoded = decode_all(tmp_path / "odd.mp4")
    assert [image.shape for image in decoded] == [(240, 320, 3)] * 10
    assert all(psnr(image[:239, :319], rgb) > 30 for image, rgb in zip(decoded, odd, strict=True))
    monkeypatch.setattr(video_writer, "video_encoder", lambda: "mpeg4")
    with VideoWriter(tmp_path / "mpeg4.mp4", 0.0, 320, 240) as writer:  # unknown rate: 25
        for rgb in pan:
            writer.write(rgb)
    with av.open(str(tmp_path / "mpeg4.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.average_rate) == ("mpeg4", Fraction(25))
    decoded = decode_all(tmp_path / "mpeg4.mp4")
    assert len(decoded) == 10 and all(psnr(a, b) > 30 for a, b in zip(decoded, pan, strict=True))


def test_writer_closes_a_playable_file_when_interrupted(tmp_path) -> None:
    with pytest.raises(KeyboardInterrupt), VideoWriter(tmp_path / "cut.mp4", 25, 320, 240) as w:
        for rgb in FRAMES[:4]:
            w.write(rgb)
        raise KeyboardInterrupt
    assert len(decode_all(tmp_path / "cut.mp4")) == 4
    with pytest.raises(VideoError, match="written to after close"):
        w.write(FRAMES[4])
    with pytest.raises(VideoError, match=r"out\.gif: cannot write \.gif video"):
        VideoWriter(tmp_path / "out.gif", 25, 320, 240)
    with VideoWriter(tmp_path / "shape.mp4", 25, 320, 240) as w, pytest.raises(ValueError):
        w.write(FRAMES[0][:100])


def test_video_files_are_told_from_images_by_content(videos, tmp_path) -> None:
    renamed = shutil.copy(videos["h264.mp4"], tmp_path / "video.dat")
    for path in [videos["h264.mp4"], videos["ffv1.mkv"], videos["mpeg4.avi"], Path(renamed)]:
        assert is_video_file(path), path
    for suffix in (".png", ".webp", ".bmp", ".tif"):
        assert cv2.imwrite(str(tmp_path / f"image{suffix}"), FRAMES[0])
    shutil.copy(next(IMAGES.glob("*.jpg")), tmp_path / "jpeg.dat")  # an image by content
    (tmp_path / "notes.txt").write_text("not a video\n")
    (tmp_path / "empty.mp4").write_bytes(b"")
    not_videos = [
        "image.png",
        "image.webp",
        "image.bmp",
        "image.tif",
        "jpeg.dat",
        "notes.txt",
        "empty.mp4",
        "missing.mp4",
        ".",
    ]
    assert not any(is_video_file(tmp_path / name) for name in not_videos)
    images = [tmp_path / "image.png", tmp_path / "image.webp"]
    began = time.perf_counter()  # called on every file `detect` is given
    assert not any(is_video_file(path) for _ in range(20) for path in images)
    assert time.perf_counter() - began < 0.1  # FFmpeg decodes a PNG (5 ms), a WebP (10 ms)


def truncated(path: Path, size: int, tmp_path: Path) -> Path:
    cut = tmp_path / f"cut_{path.name}"
    cut.write_bytes(path.read_bytes()[:size])
    return cut


def packet_end(path: Path, index: int) -> int:
    """Where the ``index``-th video packet (in file order) of ``path`` ends."""
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    return (packets[index].pos or 0) + packets[index].size


@pytest.mark.parametrize("name", ["h264.mp4", "mpeg4.avi", "png.avi", "h264.mp4 at a packet's end"])
def test_truncated_file_gives_the_frames_before_then_one_line_error(videos, tmp_path, name) -> None:
    path = videos[name.split()[0]]
    size = packet_end(path, 9) if "packet" in name else path.stat().st_size // 2
    cut = truncated(path, size, tmp_path)
    frames, message = read_until_error(cut)
    assert message.startswith(f"{cut}: corrupt at frame {len(frames)}: ")
    assert "truncated" in message
    expected = decode_all(path)
    assert 0 < len(frames) < len(expected)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(np.array_equal(f.image, expected[f.index]) for f in frames)


def test_matroska_cut_short_ends_quietly(videos, tmp_path) -> None:
    """Undetected: Matroska gives no frame count, and FFmpeg drops the cut block silently."""
    cut = truncated(videos["ffv1.mkv"], videos["ffv1.mkv"].stat().st_size // 2, tmp_path)
    with VideoReader(cut) as reader:
        frames = list(reader)
    assert 0 < len(frames) < 10
    assert all(np.array_equal(f.image, FRAMES[f.index]) for f in frames)


def test_garbage_inside_a_file_stops_it_after_the_frames_before(videos, tmp_path) -> None:
    """PNG frames are checked (an error, no frame of the damaged packet); H.264 and MPEG-4
    conceal damage without an error, so theirs goes unnoticed."""
    path, damaged = videos["png.avi"], tmp_path / "damaged.avi"
    data, middle = bytearray(videos["png.avi"].read_bytes()), packet_end(path, 4) + 100
    data[middle : middle + 2000] = (
        np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes()
    )
    damaged.write_bytes(bytes(data))
    frames, message = read_until_error(damaged)
    assert message.startswith(f"{damaged}: corrupt at frame 5: ")
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert all(np.array_equal(f.image, FRAMES[f.index]) for f in frames)


def test_empty_and_unreadable_sources_raise_one_line(videos, tmp_path) -> None:
    avi = write_video(tmp_path / "empty.avi", [], "mpeg4", "yuv420p")
    with VideoReader(avi) as reader, pytest.raises(VideoError) as err:  # opens; nothing comes
        list(reader)
    assert one_line(err) == f"{avi}: has no frames"
    mkv = write_video(tmp_path / "empty.mkv", [], "ffv1", "bgr0")
    (tmp_path / "notes.txt").write_text("not a video\n")
    (tmp_path / "empty.mp4").write_bytes(b"")
    jpeg = next(IMAGES.glob("*.jpg"))
    moov_last = write_video(tmp_path / "moov_last.mp4", FRAMES, "libx264", "yuv420p", options=H264)
    for source, problem in [
        (mkv, "has no frames"),
        (tmp_path / "missing.mp4", "no such file"),
        (tmp_path / "notes.txt", "is not a video or image"),
        (tmp_path / "empty.mp4", "empty file"),
        (jpeg, "is an image, not a video"),
        (truncated(moov_last, 10_000, tmp_path), "unreadable video (truncated or damaged?)"),
        (99, "no such device"),
    ]:
        with pytest.raises(VideoError) as err:
            VideoReader(source)
        name = f"camera {source}" if isinstance(source, int) else source
        assert one_line(err) == f"{name}: {problem}"


def test_http_stream_gives_every_frame(videos) -> None:
    with serve_video(videos["h264.mp4"].read_bytes()) as url, VideoReader(url) as reader:
        frames = list(reader)
    assert reader.info.live and reader.info.frames == 20 and reader.info.source == url
    expected = decode_all(videos["h264.mp4"])
    assert [f.index for f in frames] == list(range(20))
    assert all(np.array_equal(f.image, expected[f.index]) for f in frames)


@pytest.mark.parametrize(
    ("name", "before", "after"),  # seconds of waiting before the first frame and after the last
    [("h264.mp4", 0.0, 1.0), ("frag.mp4", 1.0, 0.0)],  # frag: the probe reads ahead in opening
)
def test_stalled_stream_raises_naming_the_url(videos, name, before, after) -> None:
    data, frames = videos[name].read_bytes(), []
    with serve_video(data, hang_after=len(data) // 2) as url:
        began = time.monotonic()
        with pytest.raises(VideoError) as err, VideoReader(url, timeout=1.0) as reader:
            for frame in reader:
                frames.append((frame.index, time.monotonic()))
        stalled = time.monotonic()
        assert one_line(err) == f"{url}: no frame for 1 s (stream stalled)"
        assert [index for index, _ in frames] == list(range(len(frames))) and 0 < len(frames) < 20
        assert 0.9 * before <= frames[0][1] - began < before + 0.8
        assert 0.9 * after <= stalled - frames[-1][1] < after + 0.8
        while reader_threads() and time.monotonic() < stalled + 2.0:
            time.sleep(0.05)
        assert not reader_threads()


@pytest.mark.parametrize(("sent", "seconds"), [(0, 1.0), (1000, 2.0)])  # 2: connect, then probe
def test_stream_stalled_while_opening_raises_naming_the_url(videos, sent, seconds) -> None:
    with serve_video(videos["h264.mp4"].read_bytes(), hang_after=sent) as url:
        began = time.monotonic()
        _, message = read_until_error(url, timeout=1.0)
        assert 0.9 * seconds <= time.monotonic() - began < seconds + 0.8
        assert message == f"{url}: no frame for 1 s (stream stalled)"


def test_refused_connection_fails_at_once() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}/video.mp4"
    began = time.monotonic()
    with pytest.raises(VideoError) as err:
        VideoReader(url)
    assert time.monotonic() - began < 1.0
    assert one_line(err) == f"{url}: cannot open: Connection refused"


def test_latest_only_drops_the_frames_a_slow_consumer_misses(videos) -> None:
    with serve_video(videos["h264.mp4"].read_bytes()) as url:
        with VideoReader(url, latest_only=True) as reader:
            indices = []
            for frame in reader:
                indices.append(frame.index)
                time.sleep(0.03)
    assert reader.skipped and indices == sorted(set(indices))
    assert sorted(indices + reader.skipped) == list(range(20))
    assert indices[-1] == 19  # the newest frame is never dropped


def test_stopping_early_leaves_no_reader_thread(videos) -> None:
    reader = VideoReader(videos["h264.mp4"])
    frames = iter(reader)
    assert [next(frames).index for _ in range(3)] == [0, 1, 2]
    assert reader_threads()  # decoding ahead of the consumer, blocked on the full queue
    began = time.monotonic()
    reader.close()
    assert time.monotonic() - began < 1.0 and not reader_threads()
    assert list(frames) == []  # closing ends the iteration
    with pytest.raises(RuntimeError):
        iter(reader)
    with VideoReader(videos["h264.mp4"]) as reader:
        indices = []
        for frame in reader:  # closing inside the loop ends it
            indices.append(frame.index)
            reader.close()
    assert indices == [0] and not reader_threads()
    for frame in VideoReader(videos["h264.mp4"]):  # neither closed nor a context manager:
        if frame.index == 2:  # the iteration dropped unfinished stops its thread
            break
    gc.collect()
    assert not reader_threads()
    iter(VideoReader(videos["h264.mp4"]))  # the thread starts at the first next()
    VideoReader(videos["h264.mp4"]).close()  # never iterated
    assert not reader_threads()


def test_stream_urls_are_told_from_paths() -> None:
    for url in [
        "rtsp://cam/1",
        "RTSPS://h/s",
        "rtmp://h/a",
        "http://h/v.mp4",
        "https://h/v",
        "udp://239.0.0.1:1234",
        "tcp://h:9",
        "srt://h:9",
    ]:
        assert is_stream_url(url), url
    for text in ["video.mp4", "/data/http/v.mp4", "file:///v.mp4", "0", "httpx://h"]:
        assert not is_stream_url(text), text
