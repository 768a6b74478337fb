"""MLflow tracking for the score models: the store, pyfunc models, champion/challenger registration, loading.

Store: ``MLFLOW_TRACKING_URI`` when set, else ``scores.mlflow.tracking_uri``, else a sqlite database at
``<lake.root>/_system/mlflow/mlflow.db`` with artifacts in ``<lake.root>/_system/mlflow/artifacts`` (MLflow 3
refuses the plain file store by default, and registry stages are deprecated, so aliases are used).

Registration: every trained model is logged as a pyfunc with a signature and registered as a new version of
``<prefix><model>`` (e.g. ``cdp_clv_bgnbd``). Models are logged *from code* (`cdp_spark.ml.pyfunc_model`): the
stored model is that file, a JSON config (parameters) and plain artifacts (NumPy arrays, a skops file for
scikit-learn estimators); nothing is pickled, so loading one executes no stored object. The version takes the alias ``champion`` only when its holdout
metric is at least as good as the current champion's (higher AUC, lower error); otherwise it takes the alias
``challenger`` and a ``reason`` tag says why. Scoring always loads ``models:/<name>@champion``.

Example:
    >>> with mlflow_store(config) as client:                                        # doctest: +SKIP
    ...     decision = register_model(client, "cdp_propensity_purchase", info.model_uri,
    ...                               Holdout("auc", 0.71, greater_is_better=True))
    >>> decision.role                                                               # doctest: +SKIP
    'champion'
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pandas as pd

from cdp_spark.locations import local_path

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from cdp_spark.config import CdpConfig

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


# ----------------------------------------------------------------------------------------------- store


def store_dir(lake_root: str) -> Path:
    """The local MLflow folder under the lake root.

    Example:
        >>> str(store_dir("/data/lake"))
        '/data/lake/_system/mlflow'
    """
    if "://" in lake_root and not lake_root.startswith("file://"):
        raise ValueError(f"the lake root {lake_root!r} is remote: set scores.mlflow.tracking_uri or "
                         "MLFLOW_TRACKING_URI to a tracking server (the default sqlite store must be local)")
    return Path(local_path(lake_root, "lake.root")).absolute() / "_system" / "mlflow"


def tracking_uri(config: "CdpConfig") -> str:
    """Where runs go: ``MLFLOW_TRACKING_URI``, else the configured URI, else sqlite under the lake root.

    Example:
        >>> tracking_uri(config)   # doctest: +SKIP
        'sqlite:////data/lake/_system/mlflow/mlflow.db'
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    cfg = _settings(config)
    if cfg.tracking_uri:
        return cfg.tracking_uri
    return f"sqlite:///{store_dir(config.lake.root) / 'mlflow.db'}"


def artifact_root(config: "CdpConfig") -> str | None:
    """Artifact location for new experiments in the default store (None: the server decides)."""
    if os.environ.get("MLFLOW_TRACKING_URI") or _settings(config).tracking_uri:
        return None
    return (store_dir(config.lake.root) / "artifacts").as_uri()


def _settings(config: "CdpConfig"):  # type: ignore[no-untyped-def]
    from cdp_spark.ml.config import ScoresConfig

    scores = getattr(config, "scores", None) or ScoresConfig()
    return scores.mlflow


@contextlib.contextmanager
def mlflow_store(config: "CdpConfig") -> Iterator["MlflowClient"]:
    """Point MLflow at the configured store and experiment for the duration of the block.

    MLflow keeps its URIs in process globals; they are restored on exit so notebooks and tests are unaffected.
    """
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(config)
    cfg = _settings(config)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # set_tracking_uri also exports MLFLOW_TRACKING_URI; keep the caller's environment and URIs intact.
    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    artifacts = artifact_root(config)  # before set_tracking_uri, which exports MLFLOW_TRACKING_URI
    previous_tracking, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(cfg.registry_uri or uri)
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=cfg.registry_uri or uri)
        if client.get_experiment_by_name(cfg.experiment) is None:
            client.create_experiment(cfg.experiment, artifact_location=artifacts)
        mlflow.set_experiment(cfg.experiment)
        yield client
    finally:
        mlflow.set_tracking_uri(previous_tracking)
        mlflow.set_registry_uri(previous_registry)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def ui_command(config: "CdpConfig", port: int = 5000) -> list[str]:
    """The ``mlflow ui`` command line for the local store.

    Example:
        >>> ui_command(config)   # doctest: +SKIP
        ['mlflow', 'ui', '--backend-store-uri', 'sqlite:///...', '--default-artifact-root', 'file:///...', ...]
    """
    uri = tracking_uri(config)
    cmd = ["mlflow", "ui", "--backend-store-uri", uri]
    root = artifact_root(config)
    if root:
        cmd += ["--default-artifact-root", root]
    return cmd + ["--host", "127.0.0.1", "--port", str(port)]


# ------------------------------------------------------------------------------------- pyfunc models


def _pyfunc_base():  # type: ignore[no-untyped-def]
    import mlflow.pyfunc

    return mlflow.pyfunc.PythonModel


class ScoreModel(_pyfunc_base()):  # type: ignore[misc]
    """A pyfunc logged from code: its state is a JSON config (`to_config`) plus files (`save_artifacts`), restored
    by `load_context` into an instance made without arguments (what `cdp_spark.ml.pyfunc_model` creates)."""

    _skip_type_hint_validation = True  # the signature comes from an example frame, not type hints

    def to_config(self) -> dict[str, Any]:
        return {}

    def save_artifacts(self, folder: Path) -> dict[str, str]:
        """Write the model's arrays and fitted objects under ``folder``; returns artifact name -> file path."""
        return {}

    def restore(self, config: dict[str, Any], artifacts: dict[str, str]) -> None:
        raise NotImplementedError

    def load_context(self, context: Any) -> None:  # MLflow calls this when the model is loaded
        self.restore(dict(context.model_config or {}), dict(context.artifacts or {}))


class BGNBDModel(ScoreModel):
    """Pyfunc BG/NBD: (frequency, recency, T) -> expected_purchases over the horizon, p_alive."""

    def __init__(self, params: dict[str, float] | None = None, horizon_periods: float = 0.0, time_unit: str = "D"):
        self.params = dict(params or {})
        self.horizon_periods = float(horizon_periods)
        self.time_unit = time_unit

    def to_config(self) -> dict[str, Any]:
        return {"params": self.params, "horizon_periods": self.horizon_periods, "time_unit": self.time_unit}

    def restore(self, config: dict[str, Any], artifacts: dict[str, str]) -> None:
        self.__init__(config["params"], config["horizon_periods"], config["time_unit"])  # type: ignore[misc]

    def bgnbd(self):  # type: ignore[no-untyped-def]
        from cdp_spark.ml.btyd import BGNBDParams

        return BGNBDParams(**{k: self.params[k] for k in ("r", "alpha", "a", "b")})

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        from cdp_spark.ml import btyd

        x = model_input["frequency"].to_numpy(float)
        t_x = model_input["recency"].to_numpy(float)
        T = model_input["T"].to_numpy(float)
        bg = self.bgnbd()
        return pd.DataFrame({
            "expected_purchases": btyd.bgnbd_conditional_expected_purchases(self.horizon_periods, x, t_x, T, bg),
            "p_alive": btyd.bgnbd_probability_alive(x, t_x, T, bg),
        })


class GammaGammaModel(ScoreModel):
    """Pyfunc Gamma-Gamma: (frequency, monetary_value) -> expected_spend per future purchase."""

    def __init__(self, params: dict[str, float] | None = None):
        self.params = dict(params or {})

    def to_config(self) -> dict[str, Any]:
        return {"params": self.params}

    def restore(self, config: dict[str, Any], artifacts: dict[str, str]) -> None:
        self.params = dict(config["params"])

    def gamma_gamma(self):  # type: ignore[no-untyped-def]
        from cdp_spark.ml.btyd import GammaGammaParams

        return GammaGammaParams(**{k: self.params[k] for k in ("p", "q", "gamma")})

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        from cdp_spark.ml import btyd

        spend = btyd.gamma_gamma_expected_spend(model_input["frequency"].to_numpy(float),
                                                model_input["monetary_value"].fillna(0.0).to_numpy(float),
                                                self.gamma_gamma())
        return pd.DataFrame({"expected_spend": spend})


# skops refuses to load types it is not told to trust; these are the ones a fitted propensity estimator holds.
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
TRUSTED_NAMES = frozenset({"cdp_spark.ml.propensity._signed_log1p"})


class ClassifierModel(ScoreModel):
    """Pyfunc wrapper of a fitted scikit-learn classifier: feature columns -> probability of the positive class.

    The estimator is stored with skops (scikit-learn's safe format) and loaded only when every type in the file is
    one scikit-learn, NumPy, SciPy or our own log transform defines.
    """

    def __init__(self, estimator: Any = None, features: list[str] | None = None):
        self.estimator = estimator
        self.features = list(features or [])

    def to_config(self) -> dict[str, Any]:
        return {"features": self.features}

    def save_artifacts(self, folder: Path) -> dict[str, str]:
        import skops.io

        path = folder / "estimator.skops"
        skops.io.dump(self.estimator, path)
        return {"estimator": str(path)}

    def restore(self, config: dict[str, Any], artifacts: dict[str, str]) -> None:
        import skops.io

        path = artifacts["estimator"]
        types = skops.io.get_untrusted_types(file=path)
        refused = [t for t in types if not t.startswith(TRUSTED_PREFIXES) and t not in TRUSTED_NAMES]
        if refused:
            raise ValueError(f"refusing to load a classifier holding untrusted types: {', '.join(refused)}")
        self.__init__(skops.io.load(path, trusted=types), config["features"])  # type: ignore[misc]

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """P(label = 1) for each row (plain numpy; used by distributed scoring)."""
        X = frame[self.features].astype(float)
        return self.estimator.predict_proba(X)[:, 1]

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return pd.DataFrame({"probability": self.predict_proba(model_input)})


class ALSRecommender(ScoreModel):
    """Pyfunc ALS recommender: ``profile_id`` -> top-k (profile_id, product_id, score, rank), no JVM needed.

    Holds the fitted user and item factors of a Spark ML ``ALSModel`` with their ids; a score is the dot
    product of the factors, as in ``ALSModel.recommendForAllUsers`` (products a profile already interacted
    with are not excluded, as there). Unknown profiles get no rows (the cold-start "drop" strategy).

    Example:
        >>> m = ALSRecommender(["p1"], np.array([[1.0, 0.0]]), ["a", "b"], np.array([[0.25, 1.0], [0.5, 0.0]]), k=1)
        >>> m.recommend(["p1", "nobody"]).to_dict("records")
        [{'profile_id': 'p1', 'product_id': 'b', 'score': 0.5, 'rank': 1}]
    """

    def __init__(self, user_ids: list[str] | None = None, user_factors: np.ndarray | None = None,
                 item_ids: list[str] | None = None, item_factors: np.ndarray | None = None, k: int = 10):
        user_ids, item_ids = list(user_ids or []), list(item_ids or [])
        user_factors = np.zeros((0, 0)) if user_factors is None else user_factors
        item_factors = np.zeros((0, 0)) if item_factors is None else item_factors
        self.user_ids = [str(u) for u in user_ids]
        self.user_factors = np.asarray(user_factors, dtype=np.float32)
        self.item_ids = np.asarray([str(i) for i in item_ids], dtype=object)
        self.item_factors = np.asarray(item_factors, dtype=np.float32)
        self.k = int(k)
        if self.user_factors.shape[0] != len(self.user_ids) or self.item_factors.shape[0] != len(self.item_ids):
            raise ValueError("ALSRecommender: ids and factor rows differ in number")

    def to_config(self) -> dict[str, Any]:
        return {"k": self.k}

    def save_artifacts(self, folder: Path) -> dict[str, str]:
        path = folder / "factors.npz"
        np.savez(path, user_ids=np.asarray(self.user_ids, dtype=str), user_factors=self.user_factors,
                 item_ids=np.asarray(self.item_ids, dtype=str), item_factors=self.item_factors)
        return {"factors": str(path)}

    def restore(self, config: dict[str, Any], artifacts: dict[str, str]) -> None:
        with np.load(artifacts["factors"], allow_pickle=False) as f:
            self.__init__(f["user_ids"].tolist(), f["user_factors"], f["item_ids"].tolist(),  # type: ignore[misc]
                          f["item_factors"], config["k"])

    @classmethod
    def from_fit(cls, fit: Any, k: int) -> "ALSRecommender":
        """Collect an :class:`cdp_spark.ml.affinity.AlsFit`'s factors and id maps (driver memory: users x rank)."""
        from pyspark.sql import functions as F

        users = (fit.model.userFactors.join(fit.users, F.col("id") == F.col("user"))
                 .select("profile_id", "features").orderBy("profile_id").toPandas())
        items = (fit.model.itemFactors.join(fit.items, F.col("id") == F.col("item"))
                 .select("product_id", "features").orderBy("product_id").toPandas())
        rank = fit.model.rank

        def matrix(frame: pd.DataFrame) -> np.ndarray:
            return np.vstack(frame["features"].to_numpy()) if len(frame) else np.zeros((0, rank), np.float32)

        return cls(users["profile_id"].tolist(), matrix(users), items["product_id"].tolist(), matrix(items), k)

    def recommend(self, profile_ids: Any, k: int | None = None) -> pd.DataFrame:
        """Top-``k`` products per known profile, best first (ties: product id order)."""
        k = min(int(k or self.k), len(self.item_ids))
        index = {u: i for i, u in enumerate(self.user_ids)}
        known = [str(p) for p in dict.fromkeys(profile_ids) if str(p) in index]
        if not known or k == 0:
            return pd.DataFrame({"profile_id": pd.Series([], dtype=object), "product_id": pd.Series([], dtype=object),
                                 "score": pd.Series([], dtype=float), "rank": pd.Series([], dtype="int32")})
        scores = self.user_factors[[index[p] for p in known]] @ self.item_factors.T
        # Stable sort on -score keeps product-id order among ties (items are stored sorted by id).
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return pd.DataFrame({
            "profile_id": np.repeat(np.asarray(known, dtype=object), k),
            "product_id": self.item_ids[top].ravel(),
            "score": np.take_along_axis(scores, top, axis=1).ravel().astype(float),
            "rank": np.tile(np.arange(1, k + 1, dtype="int32"), len(known)),
        })

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return self.recommend(model_input["profile_id"])

    def holding(self, profile_ids: Any) -> list[str]:
        """Which of ``profile_ids`` the model holds factors for."""
        mine = set(self.user_ids)
        return sorted(str(p) for p in set(profile_ids) if str(p) in mine)

    def without(self, profile_ids: Any) -> "ALSRecommender":
        """A copy without these profiles' ids and factors (erasure); every other profile scores as before.

        Example:
            >>> m = ALSRecommender(["p1", "p2"], np.eye(2), ["a", "b"], np.eye(2), k=1)
            >>> m.without(["p1"]).user_ids
            ['p2']
        """
        gone = {str(p) for p in profile_ids}
        keep = [i for i, u in enumerate(self.user_ids) if u not in gone]
        return ALSRecommender([self.user_ids[i] for i in keep], self.user_factors[keep], list(self.item_ids),
                              self.item_factors, self.k)


MODEL_CLASSES: dict[str, type[ScoreModel]] = {}  # filled below: class name -> class, for the model-code file
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")  # run by MLflow when it loads a model, never imported


def log_pyfunc(model: ScoreModel, example: pd.DataFrame, name: str = "model") -> Any:
    """Log a score model from code (`cdp_spark.ml.pyfunc_model`) with a signature inferred from ``example`` in the
    active run; returns ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature

    # Explicit requirements: MLflow's inference would re-import the model in a subprocess, slowly.
    reqs = [f"{pkg}=={_version(pkg)}" for pkg in ("mlflow", "numpy", "pandas", "scipy", "scikit-learn", "skops",
                                                   "cdp-spark")]
    config = {"model_class": type(model).__name__, **model.to_config()}
    with tempfile.TemporaryDirectory(prefix="cdp-model-") as folder, warnings.catch_warnings():
        # Integer outputs (ALS rank) never hold missing values, so MLflow's hint about them does not apply.
        warnings.filterwarnings("ignore", message=".*Integer columns in Python cannot represent missing values.*")
        signature = infer_signature(example, model.predict(None, example))
        # No input example on purpose: the signature is given, and an example would be scored and stored too.
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        return mlflow.pyfunc.log_model(name=name, python_model=str(MODEL_CODE), model_config=config,
                                       artifacts=model.save_artifacts(Path(folder)), signature=signature,
                                       pip_requirements=reqs)


def _version(pkg: str) -> str:
    from importlib.metadata import version

    return version(pkg)


# ----------------------------------------------------------------------------------- erasure


def store_exists(config: "CdpConfig") -> bool:
    """Whether there is a tracking store to look into (a configured one, or the local default already created)."""
    if os.environ.get("MLFLOW_TRACKING_URI") or _settings(config).tracking_uri:
        return True
    root = config.lake.root
    return ("://" not in root or root.startswith("file://")) and (store_dir(root) / "mlflow.db").exists()


def _recommenders(client: "MlflowClient", workdir: Path) -> Iterator[tuple[Any, "ALSRecommender", str]]:
    """(logged model, its ALSRecommender, the artifact path of its factors) for every logged model of every
    experiment that is one. A model's class and artifacts are read from its MLmodel file; only the recommenders'
    NumPy factors are downloaded, and nothing logged is run."""
    import mlflow.artifacts
    import yaml
    from mlflow.exceptions import MlflowException

    experiments = [e.experiment_id for e in client.search_experiments()]
    token = None
    while experiments:
        page = client.search_logged_models(experiments, page_token=token)
        for lm in page:
            where = str(workdir / lm.model_id)
            try:
                mlmodel = mlflow.artifacts.download_artifacts(artifact_uri=f"{lm.artifact_location}/MLmodel",
                                                              dst_path=where)
            except (MlflowException, OSError):
                continue  # not a model with files (nothing logged yet)
            pyfunc = (yaml.safe_load(Path(mlmodel).read_text()) or {}).get("flavors", {}).get("python_function", {})
            config = pyfunc.get("config") or {}
            if config.get("model_class") != ALSRecommender.__name__:
                continue
            factors = pyfunc["artifacts"]["factors"]["path"]
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"{lm.artifact_location}/{factors}",
                                                        dst_path=where)
            model = ALSRecommender()
            model.restore(config, {"factors": local})
            yield lm, model, factors
        token = page.token
        if not token:
            break


def recommenders_holding(config: "CdpConfig", profile_ids: Any) -> dict[str, int]:
    """Logged recommendation models (model id -> how many of ``profile_ids``) that still hold these profiles.

    Example:
        >>> recommenders_holding(config, ["p_1f3a"])      # doctest: +SKIP
        {}
    """
    import tempfile

    if not profile_ids or not store_exists(config):
        return {}
    out = {}
    with mlflow_store(config) as client, tempfile.TemporaryDirectory() as tmp:
        for lm, model, _ in _recommenders(client, Path(tmp)):
            held = model.holding(profile_ids)
            if held:
                out[lm.model_id] = len(held)
    return out


def scrub_recommenders(config: "CdpConfig", profile_ids: Any, *, reason: str) -> dict[str, int]:
    """Remove these profiles' ids and factors from every logged recommendation model, in place (every registered
    version and alias keeps pointing at the scrubbed artifact); returns model id -> profiles removed. Each
    scrubbed model gets the tag ``scrubbed_<reason>``. Item factors are aggregates over all profiles and stay; the
    next training run forgets the erased profiles' interactions, which erasure has deleted.

    Example:
        >>> scrub_recommenders(config, ["p_1f3a"], reason="er_0123")   # doctest: +SKIP
        {'m-5dfabb4f0a08': 1}
    """
    if not profile_ids or not store_exists(config):
        return {}
    out = {}
    with mlflow_store(config) as client, tempfile.TemporaryDirectory() as tmp:
        for lm, model, factors in _recommenders(client, Path(tmp)):
            held = model.holding(profile_ids)
            if not held:
                continue
            folder = Path(tmp) / "scrubbed" / lm.model_id
            folder.mkdir(parents=True)
            model.without(held).save_artifacts(folder)  # the same file name, so the model's MLmodel still names it
            client.log_model_artifacts(lm.model_id, str(folder), artifact_path=str(Path(factors).parent))
            client.set_logged_model_tags(lm.model_id, {f"scrubbed_{reason}": str(len(held))})
            out[lm.model_id] = len(held)
            log.info("recommendation model %s: %d erased profile(s) removed", lm.model_id, len(held))
    return out


# --------------------------------------------------------------------------- champion / challenger


@dataclass(frozen=True)
class Holdout:
    """The metric a version is judged by on held-out data."""

    metric: str
    value: float
    greater_is_better: bool = True


@dataclass
class Decision:
    """What registration did with a new version."""

    name: str
    version: str
    role: str
    reason: str
    champion_version: str | None = None
    champion_value: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "role": self.role, "reason": self.reason,
                "champion_version": self.champion_version, "champion_value": self.champion_value}


def decide(new: Holdout, champion: Holdout | None) -> tuple[bool, str]:
    """Whether ``new`` becomes champion, and why: at least as good as the champion on the same metric.

    Example:
        >>> decide(Holdout("auc", 0.70), Holdout("auc", 0.72))
        (False, "auc 0.7 is worse than the champion's 0.72")
        >>> decide(Holdout("mae", 0.3, greater_is_better=False), Holdout("mae", 0.3, greater_is_better=False))[0]
        True
    """
    if champion is None:
        return True, "first version: no champion yet"
    if new.value is None or not math.isfinite(new.value):
        return False, f"{new.metric} could not be evaluated on the holdout"
    if champion.metric != new.metric or champion.value is None or not math.isfinite(champion.value):
        return True, f"the champion has no comparable {new.metric}"
    better_or_equal = new.value >= champion.value if new.greater_is_better else new.value <= champion.value
    if better_or_equal:
        return True, f"{new.metric} {new.value:.4g} is at least as good as the champion's {champion.value:.4g}"
    return False, f"{new.metric} {new.value:.4g} is worse than the champion's {champion.value:.4g}"


def current_champion(client: "MlflowClient", name: str) -> tuple[str, Holdout | None] | None:
    """(version, its holdout) of ``name@champion``, or None when there is no champion."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    tags = mv.tags or {}
    try:
        holdout = Holdout(tags["holdout_metric"], float(tags["holdout_value"]),
                          tags.get("greater_is_better", "true") == "true")
    except (KeyError, ValueError):
        holdout = None
    return str(mv.version), holdout


def register_model(client: "MlflowClient", name: str, model_uri: str, holdout: Holdout,
                   run_id: str | None = None) -> Decision:
    """Register ``model_uri`` as a new version of ``name`` and make it champion or challenger.

    Example:
        >>> register_model(client, "cdp_clv_bgnbd", info.model_uri, Holdout("holdout_mae", 0.4, False))  # doctest: +SKIP
    """
    from mlflow.exceptions import MlflowException

    champion = current_champion(client, name)
    # The client's calls, not `mlflow.register_model`, which prints its progress to stderr.
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    mv = client.create_model_version(name, model_uri, run_id=run_id, model_id=model_id)
    promote, reason = decide(holdout, champion[1] if champion else None)
    role = CHAMPION if promote else CHALLENGER
    tags = {"holdout_metric": holdout.metric, "holdout_value": repr(float(holdout.value)),
            "greater_is_better": "true" if holdout.greater_is_better else "false", "role": role, "reason": reason}
    if run_id:
        tags["run_id"] = run_id
    for key, value in tags.items():
        client.set_model_version_tag(name, mv.version, key, value)
    client.set_registered_model_alias(name, role, mv.version)
    log.info("%s version %s registered as %s: %s", name, mv.version, role, reason)
    return Decision(name, str(mv.version), role, reason,
                    champion[0] if champion else None,
                    champion[1].value if champion and champion[1] else None)


def load_champion(client: "MlflowClient", name: str) -> tuple[Any, str] | None:
    """(the champion's Python model, its version) from ``models:/<name>@champion``, or None without one.

    Example:
        >>> model, version = load_champion(client, "cdp_propensity_purchase")   # doctest: +SKIP
    """
    import mlflow.pyfunc

    champion = current_champion(client, name)
    if champion is None:
        return None
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    return loaded.unwrap_python_model(), str(champion[0])


MODEL_CLASSES.update({c.__name__: c for c in (BGNBDModel, GammaGammaModel, ClassifierModel, ALSRecommender)})
