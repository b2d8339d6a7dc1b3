"""MLflow: one run per training job, a nested run per model, the registry and its aliases.

The tracking store and the artifact root come from `Settings.paths` (SQLite `mlruns.db` and
`mlruns/` by default; any MLflow URI works). A job's parent run records the resolved config, the
data window, the feature-set version and the report (JSON and Markdown); each model's nested run
records its parameters, metrics, plots (reliability curve, lift chart, SHAP summary) and the
LightGBM booster in its native format, registered as `healthscore-<target>-<h>d`.

Promotion (MLflow 3 aliases, not stages): a new version becomes `champion` only if its backtest
ROC AUC passes the `min_auc` gate and beats the current champion's on the same backtest by
`promotion_margin`; otherwise it is `challenger` and the reason is recorded. "The same backtest"
means the same labelled rows and fold windows: when the champion was measured on another one,
its configuration is re-run on this job's backtest first.

It fits nothing itself (the re-run is a callback) and never decides dates.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.settings import PathsConfig
from scoring.bundle import TREE_KINDS
from training import evaluate
from training.results import ModelResult

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from healthscore.settings import Settings  # the composed settings of the entry point


log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
TAG_KEY, TAG_AUC, TAG_PARAMS = "hs.backtest_key", "hs.backtest_auc", "hs.params"
TAG_KIND, TAG_BEATEN = "hs.kind", "hs.lightgbm_beaten_by"

Rebacktest = Callable[[dict[str, Any], str], float | None]
"""rebacktest(params, label) -> backtest ROC AUC of that configuration on the current data."""


def registered_name(label: str) -> str:
    """`churn_30d` -> `healthscore-churn-30d`."""
    return "healthscore-" + label.replace("_", "-")


def configure(paths: PathsConfig, experiment: str) -> str:
    """Point MLflow at the configured store; return the experiment id (created if needed)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(paths.mlflow_uri)
    mlflow.set_registry_uri(paths.mlflow_uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is not None:
        return str(exp.experiment_id)
    artifacts = str(paths.mlflow_artifacts)
    if "://" not in artifacts:
        artifacts = Path(artifacts).resolve().as_uri()
    return str(mlflow.create_experiment(experiment, artifact_location=artifacts))


@dataclass(frozen=True)
class Decision:
    alias: str
    reason: str
    champion_version: str | None = None
    champion_auc: float | None = None


def decide_alias(
    client: MlflowClient,
    name: str,
    label: str,
    new_auc: float | None,
    backtest_key: str,
    margin: float,
    min_auc: float,
    rebacktest: Rebacktest | None = None,
) -> Decision:
    """Champion or challenger for a new version of `name`, with the reason in words."""
    from mlflow.exceptions import MlflowException

    if new_auc is None or new_auc < min_auc:
        shown = "undefined" if new_auc is None else f"{new_auc:.4f}"
        return Decision(CHALLENGER, f"backtest ROC AUC {shown} is below the validation gate "
                                    f"min_auc={min_auc}")
    try:
        champ = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champ = None
    if champ is None:
        return Decision(CHAMPION, f"no champion yet; backtest ROC AUC {new_auc:.4f} passes the "
                                  f"gate min_auc={min_auc}")
    basis = "on the same backtest"
    champ_auc: float | None = None
    if champ.tags.get(TAG_KEY) == backtest_key and champ.tags.get(TAG_AUC):
        champ_auc = float(champ.tags[TAG_AUC])
    elif rebacktest is not None and TAG_PARAMS in champ.tags:
        champ_auc = rebacktest(json.loads(champ.tags[TAG_PARAMS]), label)
        basis = "re-run on this job's backtest with the champion's configuration"
    if champ_auc is None:
        return Decision(CHAMPION, f"champion v{champ.version} has no comparable backtest; "
                                  f"backtest ROC AUC {new_auc:.4f} passes the gate",
                        champ.version)
    gain = new_auc - champ_auc
    if gain >= margin:
        return Decision(CHAMPION, f"beats champion v{champ.version} {basis}: backtest ROC AUC "
                                  f"{new_auc:.4f} vs {champ_auc:.4f} (+{gain:.4f} >= margin "
                                  f"{margin})", champ.version, champ_auc)
    return Decision(CHALLENGER, f"does not beat champion v{champ.version} {basis}: backtest ROC "
                                f"AUC {new_auc:.4f} vs {champ_auc:.4f} ({gain:+.4f} < margin "
                                f"{margin}); the champion stays", champ.version, champ_auc)


def _flat(prefix: str, d: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out |= _flat(key + ".", v)
        else:
            out[key] = json.dumps(v) if isinstance(v, list | tuple) else v
    return out


def _metrics(test: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    out = {}
    for scorer, ms in test.items():
        for k, v in ms.items():
            if isinstance(v, int | float) and v is not None and np.isfinite(v):
                out[f"test_{scorer}_{k}"] = float(v)
    return out


def log_backtest_fit(report: Mapping[str, Any]) -> None:
    """On the active run: the backtest each target ran (horizons, windows, folds) and the notes
    of fitting it to the history (horizons skipped, windows shrunk)."""
    import mlflow

    if report["run"].get("backtest"):
        mlflow.log_params(_flat("backtest.", report["run"]["backtest"]))
    notes = report.get("notes") or []
    mlflow.set_tag("backtest_notes", "\n".join(notes)[:5000] if notes else "none")
    if notes:
        mlflow.log_text("\n".join(notes) + "\n", "report/notes.txt")


def write_plots(r: ModelResult, directory: Path, shap_rows: int, seed: int) -> list[Path]:
    """Reliability curve, lift chart and SHAP summary of one model on its test rows."""
    directory.mkdir(parents=True, exist_ok=True)
    preds = r.test_predictions
    paths = [
        evaluate.plot_reliability(r.y_test, {k: preds.get(k) for k in ("model", "logistic",
                                                                       "oracle")},
                                  f"{r.label}: reliability (test)", directory / "reliability.png"),
        evaluate.plot_lift(r.y_test, preds, f"{r.label}: lift by decile (test)",
                           directory / "lift.png"),
    ]
    sample = r.test_frame
    if len(sample) > shap_rows:
        sample = sample.sample(shap_rows, random_state=seed)
    matrix = r.bundle.matrix(sample)
    if r.bundle.kind == "rules":  # its factors are the rules' own shares, row by row
        return paths
    paths.append(evaluate.plot_shap_summary(
        r.bundle.contributions(matrix), matrix, r.bundle.features,
        f"{r.label}: SHAP (log-odds)", directory / "shap_summary.png"))
    return paths


def _log_model(client: MlflowClient, name: str, r: ModelResult) -> str:
    """Log the champion in the active run and register it as a new version of `name`: a
    LightGBM booster in MLflow's LightGBM flavour, a logistic or rules-score bundle as the
    bundle directory serving loads (numbers only). Returns the version."""
    import mlflow

    if r.bundle.kind == "lightgbm":
        import lightgbm as lgb
        from mlflow.models import infer_signature

        example = r.bundle.matrix(r.test_frame.head(5))
        info = mlflow.lightgbm.log_model(
            r.bundle.booster, name="model", registered_model_name=name,
            signature=infer_signature(example, r.bundle.booster.predict(example)),
            input_example=example, pip_requirements=[f"lightgbm=={lgb.__version__}"],
            metadata={"features": list(r.bundle.features), "categories": r.bundle.categories,
                      "feature_set_version": r.bundle.feature_set_version,
                      "calibrator": r.bundle.calibrator.to_dict()})
        return str(info.registered_model_version)
    from mlflow.exceptions import MlflowException

    from scoring.bundle import save_bundle

    with tempfile.TemporaryDirectory() as tmp:
        save_bundle(r.bundle, Path(tmp) / "bundle")
        mlflow.log_artifacts(str(Path(tmp) / "bundle"), artifact_path="bundle")
    try:
        client.create_registered_model(name)
    except MlflowException:
        pass  # registered by an earlier job
    run = mlflow.active_run()
    assert run is not None  # called inside the model's nested run
    return str(client.create_model_version(name, source=mlflow.get_artifact_uri("bundle"),
                                           run_id=run.info.run_id).version)


def _selection_tags(r: ModelResult) -> dict[str, str]:
    """Registry tags of the champion choice: the kind, every candidate's pooled AUC with its
    interval, and, when LightGBM lost, what beat it and the sentence saying so."""
    if not r.selection:
        return {}
    from training.selection import beaten_note, shown_auc

    choice = r.selection
    tags = {"hs.champion": choice["scorer"], "hs.selection_basis": choice["basis"]}
    for k in choice["roc_auc"]:
        tags[f"hs.auc.{k}"] = shown_auc(choice, k)
    note = beaten_note(r.label, choice)
    if note:
        tags[TAG_BEATEN] = choice["scorer"]
        tags["hs.warning"] = note
    return tags


def _description(r: ModelResult) -> str:
    """The model version's description: what it is, what it was chosen over, what it saw."""
    if not r.selection:
        return f"{r.label}: LightGBM"
    from training.selection import NAMES, beaten_note, shown_auc

    choice = r.selection
    lines = [f"{r.label}: {NAMES[choice['scorer']]} (kind {r.bundle.kind}), the champion by "
             f"{choice['basis']}: " + "; ".join(f"{NAMES[k]} {shown_auc(choice, k)}"
                                                for k in choice["roc_auc"]) + "."]
    note = beaten_note(r.label, choice)
    if note:
        lines.append("WARNING: " + note + ".")
    seen = r.bundle.metadata.get("trained_on")
    if seen:
        lines.append(f"Refit on {seen['rows']} labelled rows ({seen['positives']} positives), "
                     f"as-of {seen.get('first_as_of')} .. {seen.get('last_as_of')}.")
    return "\n".join(lines)


def _selection_metrics(choice: Mapping[str, Any]) -> dict[str, float]:
    """Each candidate's pooled out-of-fold ROC AUC and its interval, as run metrics."""
    out = {}
    for k, a in choice["roc_auc"].items():
        if a["value"] is not None:
            out[f"pooled_{k}_roc_auc"] = float(a["value"])
        if a.get("ci95"):
            out[f"pooled_{k}_roc_auc_ci95_low"] = float(a["ci95"][0])
            out[f"pooled_{k}_roc_auc_ci95_high"] = float(a["ci95"][1])
    return out


def log_training_job(
    settings: Settings,
    results: Mapping[str, ModelResult],
    report: dict[str, Any],
    *,
    fingerprint: str,
    rebacktest: Rebacktest | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    run_name: str | None = None,
) -> str:
    """Log the job and every model, register them, set aliases; fills `promotion` in the
    report and on each result. Returns the parent run id."""
    import mlflow
    from mlflow import MlflowClient

    cfg = settings.training
    experiment_id = configure(settings.paths, cfg.experiment)
    client = MlflowClient()
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as parent:
        report["run"]["run_id"] = parent.info.run_id
        mlflow.log_params(_flat("training.", cfg.model_dump(mode="json")))
        mlflow.set_tags({"feature_set_version": report["run"].get("feature_set_version", ""),
                         "data_window": report["run"].get("data_window", ""),
                         "mode": report["run"].get("mode", "")})
        mlflow.log_dict(settings.model_dump(mode="json"), "config/resolved_config.json")
        log_backtest_fit(report)
        for i, (label, r) in enumerate(results.items()):
            name = r.registered_as or registered_name(label)
            with mlflow.start_run(experiment_id=experiment_id, run_name=label, nested=True):
                selection = r.bundle.metadata.get("selection", {})
                mlflow.log_params({"label": label, "trees": r.bundle.n_trees,
                                   "calibration": r.bundle.calibrator.method,
                                   **_flat("selected.", selection),
                                   **_flat("model.", r.bundle.metadata.get("params", {}))})
                mlflow.log_metrics(_metrics(r.test))
                seen = {f"trained_on.{k}": v for k, v in
                        r.bundle.metadata.get("trained_on", {}).items()}
                if seen:  # what the registered model saw: params to compare, tags to search
                    mlflow.log_params(seen)
                    mlflow.set_tags(seen)
                if r.backtest_auc is not None and r.selection is None:
                    mlflow.log_metric("backtest_model_roc_auc_mean", r.backtest_auc)
                with tempfile.TemporaryDirectory() as tmp:
                    for p in write_plots(r, Path(tmp), cfg.shap_rows, cfg.seed):
                        mlflow.log_artifact(str(p), artifact_path="plots")
                version = _log_model(client, name, r)
                key = r.backtest_key(fingerprint)
                decision = decide_alias(client, name, label, r.backtest_auc, key,
                                        cfg.promotion_margin, cfg.min_auc, rebacktest)
                client.set_registered_model_alias(name, decision.alias, version)
                tags = {TAG_KEY: key, TAG_AUC: "" if r.backtest_auc is None
                        else repr(r.backtest_auc), "alias_reason": decision.reason,
                        TAG_KIND: r.bundle.kind}
                if r.bundle.kind in TREE_KINDS:  # what a re-run of the configuration needs
                    tags[TAG_PARAMS] = json.dumps(r.bundle.metadata.get("params", {}))
                tags |= _selection_tags(r)
                for k, v in tags.items():
                    client.set_model_version_tag(name, version, k, v)
                client.update_model_version(name, version, description=_description(r))
                if r.selection:
                    mlflow.log_metrics(_selection_metrics(r.selection))
                    mlflow.set_tags({"champion": r.selection["scorer"],
                                     "champion_kind": r.bundle.kind})
                r.promotion = {"model_name": name, "version": version, "alias": decision.alias,
                               "reason": decision.reason,
                               "champion_version": decision.champion_version,
                               "champion_backtest_auc": decision.champion_auc,
                               "backtest_auc": r.backtest_auc,
                               "kind": r.bundle.kind, "champion": r.champion}
                report["models"][label]["promotion"] = r.promotion
                mlflow.set_tags({"alias": decision.alias, "registered_version": version})
                mlflow.log_dict(evaluate.jsonable(report["models"][label]), f"report/{label}.json")
                log.info("%s v%s -> %s: %s", name, version, decision.alias, decision.reason)
            if progress:
                progress("registry", i + 1, len(results))
        mlflow.log_dict(evaluate.jsonable(report), "report/report.json")
        mlflow.log_text(evaluate.render_markdown(report), "report/report.md")
        return str(parent.info.run_id)
