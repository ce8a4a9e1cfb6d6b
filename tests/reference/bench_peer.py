"""The OpenCV peer's side of `scripts/bench.sh`: the same measurements as `facegate bench`
with cv2.FaceDetectorYN / cv2.FaceRecognizerSF / cv2.dnn on the same prepared models.

    python bench_peer.py --models DIR --threads N [--iterations N] [--warmup N] [--batch N] IMAGE...

Prints one JSON object shaped like `facegate bench --json`.
"""

import argparse
import json
import time

import cv2
import numpy as np

from opencv_reference import SCORE_THRESHOLD, NMS_THRESHOLD, TOP_K, DETECT_SIZE, YUNET, SFACE, letterbox


def timing(samples):
    samples = sorted(samples)
    n = len(samples)
    at = lambda q: samples[round((n - 1) * q)]
    return {"mean_ms": sum(samples) / n, "p50_ms": at(0.5), "p90_ms": at(0.9), "samples": n}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("images", nargs="+")
    a = p.parse_args()
    cv2.setNumThreads(a.threads)
    det = cv2.FaceDetectorYN.create(f"{a.models}/{YUNET}", "", (DETECT_SIZE, DETECT_SIZE),
                                    score_threshold=SCORE_THRESHOLD, nms_threshold=NMS_THRESHOLD, top_k=TOP_K)
    rec = cv2.FaceRecognizerSF.create(f"{a.models}/{SFACE}", "")
    net = cv2.dnn.readNet(f"{a.models}/{SFACE}")
    images = [cv2.imread(path) for path in a.images]

    crops = []
    for img in images:
        padded, s = letterbox(img)
        faces = det.detect(padded)[1]
        for row in [] if faces is None else faces:
            row = row.copy()
            row[:14] /= s
            crops.append(rec.alignCrop(img, row))

    detect = []
    for rep in range(a.warmup + a.iterations):
        for img in images:
            t = time.perf_counter()
            padded, s = letterbox(img)
            det.detect(padded)
            if rep >= a.warmup:
                detect.append((time.perf_counter() - t) * 1e3)

    def embed_timing(size):
        group = [crops[i % len(crops)] for i in range(size)]
        per_face = []
        for rep in range(a.warmup + a.iterations):
            t = time.perf_counter()
            if size == 1:
                rec.feature(group[0])  # OpenCV's own one-face API
            else:
                # FaceRecognizerSF has no batch call: the same network through cv2.dnn, RGB as it feeds it.
                net.setInput(cv2.dnn.blobFromImages(group, 1.0, (112, 112), (0, 0, 0), True, False))
                net.forward()
            if rep >= a.warmup:
                per_face.append((time.perf_counter() - t) * 1e3 / size)
        return timing(per_face)

    print(json.dumps({
        "provider": f"opencv {cv2.__version__} (cpu)",
        "intra_threads": a.threads,
        "images": len(images),
        "faces": len(crops),
        "detect_ms_per_frame": timing(detect),
        "embed_ms_per_face_batch1": embed_timing(1),
        "embed_ms_per_face_batch_n": embed_timing(a.batch),
        "batch": a.batch,
    }))


if __name__ == "__main__":
    main()
