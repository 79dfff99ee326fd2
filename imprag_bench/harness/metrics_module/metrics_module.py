"""imprag-bench answer metrics as a local `evaluate` module (loads offline, no hub access).

Usage: evaluate.load(imprag_bench.harness.metrics.evaluate_module_path()).compute(predictions=[...], references=[[...]])
returns {"exact_match": mean EM, "f1": mean token F1}, fractions in [0, 1]. The scores come from
imprag_bench.harness.metrics (imported, not copied), so this module can never disagree with the harness.

Note for maintainers: evaluate scans this file's import lines to check they are installed; keep one
import per line and no imports inside docstrings.
"""
import datasets
import evaluate
from imprag_bench.harness.metrics import exact_match
from imprag_bench.harness.metrics import f1

_DESCRIPTION = "SQuAD-normalised exact match and token F1, max over gold aliases, averaged over examples."

_KWARGS_DESCRIPTION = (
    "Args: predictions (list of str), references (list of list of str: the accepted aliases of each "
    "example, at least one). Returns: exact_match and f1, means over examples as fractions in [0, 1]."
)


class MetricsModule(evaluate.Metric):
    """EM and F1 of imprag-bench, wrapped so `evaluate.load` on the folder works offline."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Value("string"),
                "references": datasets.Sequence(datasets.Value("string")),
            }),
        )

    def _compute(self, predictions, references):
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        if not predictions:
            raise ValueError("no predictions to score")
        em = [exact_match(p, r) for p, r in zip(predictions, references)]
        f = [f1(p, r) for p, r in zip(predictions, references)]
        return {"exact_match": sum(em) / len(em), "f1": sum(f) / len(f)}
