"""The compiled pipeline gives the Kubeflow UI the artifact types it draws: the evaluate step's
ClassificationMetrics output (confusion matrix, ROC curve) beside its Metrics, HTML and Markdown."""

from __future__ import annotations

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from mlengine.pipelines.platform import TARGETS, Target, compile_for
from mlengine.pipelines.training import PIPELINE_NAME


@pytest.fixture(scope="module", params=TARGETS)
def compiled(request, tmp_path_factory) -> pipeline_spec_pb2.PipelineSpec:
    path = compile_for(Target(request.param), tmp_path_factory.mktemp(request.param))[PIPELINE_NAME]
    with open(path, encoding="utf-8") as handle:
        documents = list(yaml.safe_load_all(handle))
    spec = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(documents[0], spec, ignore_unknown_fields=False)
    return spec


def _task(spec: pipeline_spec_pb2.PipelineSpec, name: str):
    """A task of the pipeline wherever it sits (on a cluster the steps are inside an exit handler's DAG)."""
    dags = [spec.root.dag, *(component.dag for component in spec.components.values() if component.HasField("dag"))]
    found = [dag.tasks[name] for dag in dags if name in dag.tasks]
    assert len(found) == 1, f"{name}: {len(found)} tasks"
    return found[0]


def test_evaluate_outputs_carry_the_ui_artifact_types(compiled):
    task = _task(compiled, "evaluate")
    component = compiled.components[task.component_ref.name]
    outputs = {name: artifact.artifact_type.schema_title
               for name, artifact in component.output_definitions.artifacts.items()}
    assert outputs == {"classification_metrics": "system.ClassificationMetrics", "metrics": "system.Metrics",
                       "eval_html": "system.HTML", "eval_report": "system.Markdown", "evaluation": "system.Artifact"}
    # the executor the task runs is the component's own, whose program writes the artifact
    executor = compiled.deployment_spec["executors"][component.executor_label]
    program = executor["container"]["command"][-1]
    assert "log_classification_metrics(classification_metrics, result.classification)" in program


def test_evaluate_reads_the_training_split_for_a_classifiers_benchmark(compiled):
    task = _task(compiled, "evaluate")
    inputs = task.inputs.artifacts
    assert inputs["train_data"].task_output_artifact.producer_task == "ingest"
    assert inputs["train_data"].task_output_artifact.output_artifact_key == "train_data"
    assert inputs["test_data"].task_output_artifact.output_artifact_key == "test_data"
    component = compiled.components[task.component_ref.name]
    assert component.input_definitions.artifacts["train_data"].artifact_type.schema_title == "system.Dataset"


def test_the_pipeline_carries_the_task_to_ingest(compiled):
    task_input = compiled.root.input_definitions.parameters["task"]
    assert task_input.parameter_type == pipeline_spec_pb2.ParameterType.STRING
    assert task_input.default_value.string_value == "" and "binary" in task_input.description
    ingest = _task(compiled, "ingest")
    if "task" in ingest.inputs.parameters:  # the local target: the root's parameter straight to ingest
        passed = ingest.inputs.parameters["task"]
    else:  # the cluster target: through the exit handler's DAG
        handler = next(t for t in compiled.root.dag.tasks.values() if t.component_ref.name.startswith("comp-exit"))
        assert handler.inputs.parameters["pipelinechannel--task"].component_input_parameter == "task"
        passed = ingest.inputs.parameters["task"]
    assert passed.component_input_parameter in ("task", "pipelinechannel--task")
