"""The paper's own numbers for its analyses, as data (../shared/docs/imprag-paper-spec.md sections 8.2 and 8.3),
so that a figure or table of ours can draw them beside our values as a labelled reference, never mixed in.

Figure 2 (Llama-3.2-3B, NQ dev, 1k examples): EM and recall as b moves with t = 19, and as t moves with b = 7;
the x-values are inferred from the figure (the spec marks them [I]). Table 3 (Llama-3.2-3B, each retrieval
objective for all 10 epochs): EM (recall) per task; FEVER has no recall."""
from __future__ import annotations

FIG2_B_AT_T, FIG2_T_AT_B = 19, 7  # the other boundary, held fixed in each panel
FIG2_B = {  # b -> (EM, recall), t = FIG2_B_AT_T
    1: (27.4, 49.1), 2: (29.5, 55.1), 3: (30.5, 62.4), 4: (30.7, 61.9), 5: (36.3, 69.0), 6: (40.2, 75.0),
    7: (45.1, 81.0), 8: (44.5, 81.5), 9: (44.0, 82.1), 10: (44.1, 82.2), 11: (43.2, 81.6), 12: (42.1, 80.5)}
FIG2_T = {  # t -> (EM, recall), b = FIG2_T_AT_B
    9: (30.2, 70.2), 10: (32.5, 71.4), 11: (34.2, 74.3), 12: (35.5, 74.9), 13: (37.9, 76.2), 14: (41.3, 77.2),
    15: (41.1, 77.1), 16: (42.5, 78.3), 17: (44.0, 80.7), 18: (44.5, 80.9), 19: (45.1, 81.0)}

TABLE3_TASKS = ("nq", "simpleqa", "hotpotqa", "2wiki", "trex", "zsre", "fever", "aida")
TABLE3 = {  # objective -> task -> (EM, recall or None)
    "distill-only": dict(zip(TABLE3_TASKS, [(29.9, 61.2), (30.1, 39.9), (29.8, 41.9), (27.5, 37.4), (35.6, 64.9),
                                            (40.9, 65.9), (67.7, None), (28.3, 22.5)])),
    "warmup-only": dict(zip(TABLE3_TASKS, [(44.0, 78.3), (39.9, 50.0), (37.1, 50.0), (35.1, 44.2), (56.5, 87.0),
                                           (61.2, 88.3), (81.0, None), (45.2, 42.9)])),
    "both": dict(zip(TABLE3_TASKS, [(44.1, 78.4), (40.3, 50.0), (37.3, 50.2), (35.5, 44.5), (60.8, 90.2),
                                    (65.4, 93.2), (83.8, None), (52.6, 58.3)])),
}
TABLE3_AVG = {"distill-only": (36.2, 47.7), "warmup-only": (50.0, 63.0), "both": (52.5, 66.4)}
