"""MLflow: a run per job with nested runs per model, the six registered models, and aliases: a
new version takes `champion` only if it beats the champion on the same backtest."""

import json
from pathlib import Path

import pytest

from healthscore.settings import load_settings
from scoring.bundle import load_bundle
from tests.support.train_frames import shared_once, snapshot_frame
from training import tracking
from training.pipeline import (
    build_report,
    plan_backtests,
    record_fit,
    save_bundles,
    train_and_backtest,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("train-tracking")]


def _settings(tmp_path, **training):
    return load_settings(
        paths={"mlflow_uri": f"sqlite:///{tmp_path}/mlruns.db",
               "mlflow_artifacts": str(tmp_path / "mlruns"), "models_dir": str(tmp_path / "m")},
        training={"max_trees": 60, "n_folds": 2, "shap_rows": 200, **training})


def _job(settings, ts):
    plans = plan_backtests(ts, settings.training, settings.training.targets)
    results = train_and_backtest(ts, settings.training, plans=plans)
    report = build_report(results, {"mode": "unit", "feature_set_version": "1"})
    record_fit(report, results, plans)
    run_id = tracking.log_training_job(settings, results, report,
                                       fingerprint=ts.fingerprint("churn_90d"))
    save_bundles(results, settings.paths.models_dir, report)
    return results, report, run_id


@pytest.fixture(scope="module")
def two_jobs(tmp_path_factory):
    return shared_once(tmp_path_factory, "train-tracking", _two_jobs)


def _client(settings):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.paths.mlflow_uri,
                        registry_uri=settings.paths.mlflow_uri)


def _two_jobs(tmp):
    ts = snapshot_frame(n_accounts=200, n_dates=20)
    good = _settings(tmp)
    first = _job(good, ts)
    worse = _settings(tmp, num_leaves=2, max_trees=2, learning_rate=0.01)
    second = _job(worse, ts)
    return tmp, good, first, second


def test_six_registered_models_each_with_a_champion(two_jobs):
    _, settings, _, _ = two_jobs
    client = _client(settings)
    names = sorted(m.name for m in client.search_registered_models())
    assert names == sorted(f"healthscore-{t}-{h}d" for t in ("churn", "expansion")
                           for h in (30, 60, 90))
    for name in names:
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"


def test_a_worse_second_run_leaves_the_champion_in_place_and_says_why(two_jobs):
    _, settings, _, (results, report, _) = two_jobs
    client = _client(settings)
    for label, r in results.items():
        name = tracking.registered_name(label)
        assert r.promotion["alias"] == "challenger"
        assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
        assert "does not beat champion v1 on the same backtest" in r.promotion["reason"]
        assert report["models"][label]["promotion"]["reason"] == r.promotion["reason"]


def test_the_run_records_config_metrics_report_plots_and_the_native_model(two_jobs):
    import mlflow

    _, settings, (results, report, run_id), _ = two_jobs
    client = _client(settings)
    tracking.configure(settings.paths, settings.training.experiment)
    run = client.get_run(run_id)
    assert json.loads(run.data.params["training.num_leaves"]) == \
        settings.training.model_dump(mode="json")["num_leaves"]
    assert run.data.tags["feature_set_version"] == "1"
    top = {a.path for a in client.list_artifacts(run_id, "report")}
    assert {"report/report.json", "report/report.md"} <= top
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{run_id}'")
    assert len(children) == 6
    from training.search import SPACE

    leaves = set(settings.training.leaf_candidates) | set(SPACE["num_leaves"])
    for child in children:
        label = child.info.run_name
        kind = child.data.tags["champion_kind"]
        assert kind == results[label].bundle.kind
        assert child.data.metrics["test_model_roc_auc"] > 0.5
        # How each champion was chosen on its early-stopping window is a parameter of its run:
        # LightGBM's tree size, logistic regression's L2 strength.
        if kind == "lightgbm":
            assert int(child.data.params["selected.num_leaves"]) in leaves
        elif kind == "logistic":
            assert float(child.data.params["selected.C"]) in settings.training.logistic_c
        plots = {a.path for a in client.list_artifacts(child.info.run_id, "plots")}
        assert plots == {"plots/reliability.png", "plots/lift.png"} | (
            set() if kind == "rules" else {"plots/shap_summary.png"})
        # The registered champion loads from the registry as what it is: a LightGBM booster in
        # MLflow's own flavour, any other kind as the bundle serving reads.
        uri = f"models:/{tracking.registered_name(label)}@champion"
        if kind == "lightgbm":
            assert mlflow.lightgbm.load_model(uri).num_trees() > 0
        else:
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
            bundle = load_bundle(folder, feature_set_version=None)
            assert bundle.kind == kind
            rows = results[label].test_frame.head(20)
            assert bundle.predict_proba(rows) == pytest.approx(
                results[label].bundle.predict_proba(rows))
    saved = json.loads(Path(client.download_artifacts(run_id, "report/report.json")).read_text())
    assert saved["models"]["churn_30d"]["promotion"]["alias"] == "champion"
    assert report["run"]["run_id"] == run_id


def test_the_run_records_what_data_each_registered_model_saw(two_jobs):
    _, settings, (results, report, run_id), _ = two_jobs
    client = _client(settings)
    run = client.get_run(run_id)
    assert run.data.params["backtest.churn.n_folds"] == "2"
    assert json.loads(run.data.params["backtest.churn.horizons"]) == [30, 60, 90]
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{run_id}'")
    for child in children:
        seen = results[child.info.run_name].bundle.metadata["trained_on"]
        assert child.data.params["trained_on.last_as_of"] == seen["last_as_of"]
        assert child.data.tags["trained_on.rows"] == str(seen["rows"])
        assert report["models"][child.info.run_name]["trained_on"] == seen
    # churn_30d is labelled up to the last month, the 90-day models three months earlier
    assert results["churn_30d"].bundle.metadata["trained_on"]["last_as_of"] > \
        results["churn_90d"].bundle.metadata["trained_on"]["last_as_of"]


def test_champions_are_saved_for_serving_and_challengers_apart(two_jobs):
    tmp, settings, _, _ = two_jobs
    models = settings.paths.models_dir
    champion = load_bundle(models / "churn_90d", feature_set_version=None)
    assert champion.metadata["registry"]["alias"] == "champion"
    challenger = load_bundle(models / "challengers" / "churn_90d", feature_set_version=None)
    assert challenger.metadata["registry"]["alias"] == "challenger"
    assert (models / "last_report" / "report.md").exists()


class _Version:
    def __init__(self, tags):
        self.version, self.tags = "3", tags


class _Client:
    def __init__(self, tags):
        self.tags = tags

    def get_model_version_by_alias(self, name, alias):
        return _Version(self.tags)


def test_a_champion_measured_on_another_backtest_is_re_run_on_this_one():
    calls = []

    def rebacktest(params, label):
        calls.append((params, label))
        return 0.70

    client = _Client({tracking.TAG_KEY: "old-data", tracking.TAG_AUC: "0.99",
                      tracking.TAG_PARAMS: json.dumps({"num_leaves": 4})})
    d = tracking.decide_alias(client, "n", "churn_30d", 0.72, "new-data", 0.005, 0.55, rebacktest)
    assert calls == [({"num_leaves": 4}, "churn_30d")]
    assert d.alias == "champion" and "re-run on this job's backtest" in d.reason


def test_a_model_below_the_gate_is_never_champion():
    d = tracking.decide_alias(_Client({}), "n", "churn_30d", 0.52, "k", 0.005, 0.55)
    assert d.alias == "challenger" and "validation gate" in d.reason
