"""Customer scores: RFM, CLV (BG/NBD + Gamma-Gamma), affinities, recommendations and propensity.

- :mod:`cdp_spark.ml.rfm`: RFM measures, tie-safe quantile scores and rule-based segments (Spark).
- :mod:`cdp_spark.ml.clv`: CLV summaries, fitting and distributed scoring (Spark + driver-side fit).
- :mod:`cdp_spark.ml.btyd`: the pure numpy/scipy model math used by both the driver and Spark workers.
- :mod:`cdp_spark.ml.affinity`: decayed engagement affinities and implicit-feedback ALS recommendations.
- :mod:`cdp_spark.ml.propensity`: point-in-time features, purchase/churn classifiers, distributed scoring.
- :mod:`cdp_spark.ml.tracking`: the MLflow store, pyfunc models and champion/challenger registration.
- :mod:`cdp_spark.ml.stage`: the `scores` pipeline stage (``compute`` returns DataFrames, ``run`` writes).

Jobs and notebooks call the same functions with DataFrames and plain parameters.

Example:
    >>> from cdp_spark.ml import rfm, clv   # doctest: +SKIP
    >>> scores = rfm.rfm_scores(rfm.rfm_measures(purchases, as_of=date(2024, 6, 30)))   # doctest: +SKIP
"""
from cdp_spark.domain_spec import Domain, Section
from cdp_spark.ml.config import ScoresConfig
from cdp_spark.ml.tables import TABLES
from cdp_spark.stage_spec import StageSpec

STAGE = StageSpec(
    "scores", run="cdp_spark.ml.stage:run",
    reads=("bronze.events", "gold.id_graph", "gold.event_profiles", "gold.profiles", "gold.profile_attributes"),
    writes=("gold.profile_scores", "gold.affinities", "gold.recommendations"),
    rules=("scores", "identity", "routes"))
DOMAIN = Domain("scores", stage=STAGE, tables=tuple(TABLES),
                sections=(Section("scores", ScoresConfig, ScoresConfig),),
                cli=(("mlflow", "cdp_spark.ml.cli:mlflow_app"),))
