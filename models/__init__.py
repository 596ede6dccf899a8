"""models — the science: LGE slices with geometry -> labels -> clinical measurements.

No networking, no training code, no dependency on `node` or `pipeline`.
Labels: 0 background, 1 LV cavity, 2 normal myocardium, 3 infarct, 4 no-reflow (MVO).
"""

LABELS: dict[int, str] = {
    0: "background",
    1: "LV cavity",
    2: "normal myocardium",
    3: "infarct",
    4: "no-reflow (MVO)",
}
