"""Peer implementation of `facegate embed`, built from OpenCV's own YuNet and SFace wrappers.

facegate's detector, alignment and embedder are checked against this output
(tests/fixtures/opencv_reference.json). It follows the same recipe facegate does:
detect on the image scaled to 640 on its long side, map the results back, align and
embed from the full-resolution image.

    python opencv_reference.py --models DIR --out FILE IMAGE...
"""

import argparse
import hashlib
import json
import os
import sys

import cv2
import numpy as np

DETECT_SIZE = 640
SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3
TOP_K = 5000
YUNET = "face_detection_yunet_2023mar.onnx"
SFACE = "face_recognition_sface_2021dec.onnx"


def letterbox(img):
    """Scale the long side to DETECT_SIZE and pad bottom/right with zeros; returns (padded, scale)."""
    h, w = img.shape[:2]
    s = DETECT_SIZE / max(w, h)
    interpolation = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(img, (round(w * s), round(h * s)), interpolation=interpolation)
    rh, rw = resized.shape[:2]
    padded = cv2.copyMakeBorder(resized, 0, DETECT_SIZE - rh, 0, DETECT_SIZE - rw,
                                cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return padded, s


def r6(values):
    return [round(float(v), 6) for v in values]


def describe(path, detector, recognizer):
    img = cv2.imread(path, cv2.IMREAD_COLOR)  # BGR, as both OpenCV models expect
    if img is None:
        raise SystemExit(f"opencv_reference: cannot read {path}")
    padded, s = letterbox(img)
    faces = detector.detect(padded)[1]
    faces = [] if faces is None else sorted(faces, key=lambda row: -row[14])
    out = []
    for row in faces:
        row = row.astype(np.float32).copy()
        row[:14] /= s  # box and landmarks back to original pixels; score untouched
        crop = recognizer.alignCrop(img, row)  # aligned from the full-resolution image
        emb = recognizer.feature(crop).flatten().astype(np.float64)
        emb /= np.linalg.norm(emb)
        out.append({
            "box": r6(row[:4]),
            "score": round(float(row[14]), 6),
            "landmarks": [r6(row[4 + 2 * i:6 + 2 * i]) for i in range(5)],
            "embedding": r6(emb),
        })
    return {"width": img.shape[1], "height": img.shape[0], "faces": out}


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def dump(value, indent=0):
    """JSON with one face field per line: readable diffs without a line per float."""
    pad = " " * indent
    if isinstance(value, dict) and value:
        items = [f'{pad}  {json.dumps(k)}: {dump(v, indent + 2)}' for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and value and isinstance(value[0], dict):
        items = [pad + "  " + dump(v, indent + 2) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(value, separators=(", ", ": "))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="directory with the prepared fp32 models")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()

    yunet = os.path.join(args.models, YUNET)
    sface = os.path.join(args.models, SFACE)
    detector = cv2.FaceDetectorYN.create(yunet, "", (DETECT_SIZE, DETECT_SIZE),
                                         score_threshold=SCORE_THRESHOLD,
                                         nms_threshold=NMS_THRESHOLD, top_k=TOP_K)
    recognizer = cv2.FaceRecognizerSF.create(sface, "")

    images = {}
    for path in args.images:
        name = os.path.basename(path)
        if name in images:
            raise SystemExit(f"opencv_reference: two images named {name}")
        images[name] = describe(path, detector, recognizer)

    report = {
        "generator": "tests/reference/opencv_reference.py (cv2.FaceDetectorYN + cv2.FaceRecognizerSF)",
        "opencv_version": cv2.__version__,
        "params": {
            "detect_size": DETECT_SIZE,
            "resize": "long side to detect_size: INTER_AREA when shrinking, INTER_LINEAR when enlarging;"
                      " size round(w*s) x round(h*s); results divided by s = detect_size / max(w, h)",
            "pad": "zeros at bottom and right to detect_size x detect_size",
            "score_threshold": SCORE_THRESHOLD,
            "nms_threshold": NMS_THRESHOLD,
            "top_k": TOP_K,
            "align": "FaceRecognizerSF.alignCrop on the original image, 112x112",
            "embedding": "FaceRecognizerSF.feature, L2-normalised",
            "yunet": {"file": YUNET, "sha256": sha256_of(yunet)},
            "sface": {"file": SFACE, "sha256": sha256_of(sface)},
        },
        "images": images,
    }
    with open(args.out, "w") as f:
        f.write(dump(report) + "\n")
    for name, image in images.items():
        print(f"{name}: {len(image['faces'])} faces", file=sys.stderr)


if __name__ == "__main__":
    main()
