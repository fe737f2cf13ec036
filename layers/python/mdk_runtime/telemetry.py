"""Names of the metrics the inference function emits (EMF), shared with the CDK alarms and dashboards."""

NAMESPACE = "mdk"
SERVICE = "mdk-inference"  # Powertools adds it as the "service" dimension of every metric

LATENCY = "Latency"
INSTANCES = "Instances"
CLIENT_ERRORS = "ClientErrors"
SERVER_ERRORS = "ServerErrors"
ERRORS_BY_CODE = "ErrorsByCode"
COLD_START = "ColdStart"  # Powertools' own, dimensions function_name and service
INIT_DURATION = "InitDuration"  # ms from the handler module's import to the model being warm

DIM_MODEL = "Model"
DIM_VERSION = "ModelVersion"
DIM_SERVICE = "service"
DIM_ERROR_CODE = "ErrorCode"
INFERENCE_TIMEOUT = "inference_timeout"  # the ErrorCode of a prediction stopped at its deadline
