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

# Capture (mdk_runtime.capture): sampled by the request path, written (or lost) by the sender thread.
CAPTURE_SAMPLED = "CaptureSampled"  # predictions picked for capture (one per request)
CAPTURE_WRITTEN = "CaptureWritten"  # capture records written to S3
CAPTURE_FAILED = "CaptureFailed"  # records lost (S3 refused them after retries, or the queue was full)

# The monitor job (lambda_handlers.monitor): live quality and drift, per model and version.
ACCURACY = "Accuracy"  # classifiers: share of joined predictions whose label matches the feedback
MAE = "MAE"  # regressors: mean absolute error of joined predictions
FEEDBACK_COVERAGE = "FeedbackCoverage"  # share of captured predictions in the window with feedback
JOINED = "FeedbackJoined"  # predictions in the window with feedback
CAPTURED = "CapturedInstances"  # captured instances in the window
LABEL_SHARE = "LabelShare"  # share of each predicted label in the window (dimension Label)
FEATURE_DRIFT = "FeatureDrift"  # PSI of one input feature against the baseline (dimension Feature)
OUTPUT_DRIFT = "OutputDrift"  # PSI of the predicted label/value distribution against the baseline
DRIFT_MAX = "DriftMax"  # the largest FeatureDrift/OutputDrift of the run: what the drift alarm watches
DIM_LABEL = "Label"
DIM_FEATURE = "Feature"
