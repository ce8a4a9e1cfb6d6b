"""How well facegate's `embed --json` output agrees with the OpenCV peer's reference.

    python agreement.py REFERENCE.json FACEGATE_OUTPUT.json...

Each reference face is matched to the facegate face of largest IoU; a match needs
IoU >= 0.5. Prints recall, precision, IoU and embedding cosine of matched faces, and
exits 1 when recall < 0.95 or any matched cosine < 0.99 (the foundation issue's bar).
"""

import json
import os
import sys


def iou(a, b):
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(x * x for x in b) ** 0.5
    return dot / (na * nb)


def main():
    reference = json.load(open(sys.argv[1]))["images"]
    ref_faces = matched = ours_total = 0
    ious, cosines = [], []
    for path in sys.argv[2:]:
        ours = json.load(open(path))
        name = os.path.basename(ours["image"])
        expected = reference[name]["faces"]
        got = ours["faces"]
        ref_faces += len(expected)
        ours_total += len(got)
        used = set()
        for i, ef in enumerate(expected):
            scored = [(iou(gf["box"], ef["box"]), j) for j, gf in enumerate(got) if j not in used]
            best_iou, j = max(scored, default=(0.0, None))
            if best_iou < 0.5:
                print(f"{name} face {i}: not found by facegate (best IoU {best_iou:.2f})")
                continue
            used.add(j)
            matched += 1
            c = cosine(got[j]["embedding"], ef["embedding"])
            ious.append(best_iou)
            cosines.append(c)
            print(f"{name} face {i}: IoU {best_iou:.3f}  cosine {c:.4f}  "
                  f"score {got[j]['score']:.3f} vs {ef['score']:.3f}")
    recall = matched / ref_faces if ref_faces else 1.0
    precision = matched / ours_total if ours_total else 1.0
    print(f"faces: reference {ref_faces}, facegate {ours_total}, matched {matched}")
    print(f"recall {recall:.3f}  precision {precision:.3f}  "
          f"IoU min {min(ious, default=0):.3f}  cosine min {min(cosines, default=0):.4f} "
          f"mean {sum(cosines) / max(len(cosines), 1):.4f}")
    ok = recall >= 0.95 and all(c >= 0.99 for c in cosines)
    print("agreement: " + ("PASS" if ok else "FAIL"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
