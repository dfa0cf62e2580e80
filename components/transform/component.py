"""KFP wrapper of the analyze pass (components/transform/logic.py)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from mlengine.constants import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def transform(
    train_data: Input[Dataset],
    statistics: Input[Artifact],
    nbuckets: int,
    transform_fn: Output[Artifact],
):
    """Analyze the training split (bucket boundaries for `nbuckets`, means/stds, vocabularies)."""
    import sys
    from pathlib import Path

    from mlengine.components.shared.featurespec import load_spec
    from mlengine.components.transform.logic import analyze, save_transform
    from mlengine.constants import SPEC_FILE

    spec = load_spec(Path(statistics.path) / SPEC_FILE)
    state = analyze(train_data.path, spec, nbuckets, progress=lambda line: print(line, file=sys.stderr, flush=True))
    save_transform(state, transform_fn.path)
    transform_fn.metadata.update({"nbuckets": nbuckets, "rows": state["rows"], "spec": spec.name})
