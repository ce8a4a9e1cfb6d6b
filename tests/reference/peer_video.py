"""The OpenCV peer pipeline for the daemon benchmark (`scripts/bench_daemon.sh`).

    python peer_video.py --models DIR --threads N --enroll IMAGE [--threshold T] VIDEO

Reads every frame of VIDEO with cv2.VideoCapture, detects faces with cv2.FaceDetectorYN on
the frame scaled to 640 on the long side, aligns each face from the full frame, embeds it
with cv2.FaceRecognizerSF and compares it with the largest face of IMAGE (cosine ≥ T is
"recognized"). Prints one JSON object: frames, faces, recognized faces, wall seconds, frames
per second, and per-frame latency (from the frame being decoded to its last face decided).
"""

import argparse
import json
import time

import cv2
import numpy as np

from opencv_reference import SCORE_THRESHOLD, NMS_THRESHOLD, TOP_K, DETECT_SIZE, YUNET, SFACE, letterbox


def percentile(samples, q):
    samples = sorted(samples)
    return samples[round((len(samples) - 1) * q)] if samples else 0.0


def faces_of(det, img):
    padded, s = letterbox(img)
    faces = det.detect(padded)[1]
    out = []
    for row in [] if faces is None else faces:
        row = row.copy()
        row[:14] /= s
        out.append(row)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--enroll", required=True)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("video")
    a = p.parse_args()
    cv2.setNumThreads(a.threads)
    det = cv2.FaceDetectorYN.create(f"{a.models}/{YUNET}", "", (DETECT_SIZE, DETECT_SIZE),
                                    score_threshold=SCORE_THRESHOLD, nms_threshold=NMS_THRESHOLD, top_k=TOP_K)
    rec = cv2.FaceRecognizerSF.create(f"{a.models}/{SFACE}", "")

    photo = cv2.imread(a.enroll)
    if photo is None:
        raise SystemExit(f"error: {a.enroll}: not an image")
    enrolled = max(faces_of(det, photo), key=lambda r: r[2] * r[3], default=None)
    if enrolled is None:
        raise SystemExit(f"error: {a.enroll}: no face found")
    gallery = rec.feature(rec.alignCrop(photo, enrolled)).flatten()
    gallery /= np.linalg.norm(gallery)

    cap = cv2.VideoCapture(a.video)
    if not cap.isOpened():
        raise SystemExit(f"error: {a.video}: cannot open")
    frames = faces = recognized = 0
    latency_ms = []
    started = time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        t = time.perf_counter()
        for row in faces_of(det, frame):
            v = rec.feature(rec.alignCrop(frame, row)).flatten()
            v /= np.linalg.norm(v)
            faces += 1
            recognized += float(v @ gallery) >= a.threshold
        latency_ms.append((time.perf_counter() - t) * 1e3)
        frames += 1
    wall = time.perf_counter() - started
    print(json.dumps({
        "implementation": "opencv-peer",
        "opencv": cv2.__version__,
        "threads": a.threads,
        "frames": frames,
        "faces": faces,
        "recognized_faces": recognized,
        "wall_s": wall,
        "fps": frames / wall if wall > 0 else 0.0,
        "latency_p50_ms": percentile(latency_ms, 0.5),
        "latency_p99_ms": percentile(latency_ms, 0.99),
    }))


if __name__ == "__main__":
    main()
