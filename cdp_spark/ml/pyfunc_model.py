"""The MLflow models-from-code file of the score models (`cdp_spark.ml.tracking.log_pyfunc` logs it with each
model): loading a model runs this file, which creates an empty instance of the logged class; MLflow then calls its
`load_context`, which restores it from the logged config and artifacts. No Python object is pickled. Only MLflow
runs this file (it needs the model's config); do not import it.

Example:
    >>> mlflow.pyfunc.load_model("models:/cdp_clv_bgnbd@champion").unwrap_python_model().params   # doctest: +SKIP
    {'r': 0.24, 'alpha': 4.4, 'a': 0.79, 'b': 2.4}
"""
from mlflow.models import ModelConfig, set_model

from cdp_spark.ml.tracking import MODEL_CLASSES

set_model(MODEL_CLASSES[ModelConfig().get("model_class")]())
