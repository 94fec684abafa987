"""Names of the API group, kinds and the labels and annotations the operator owns."""

GROUP = "telechat.ai"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

KIND = "TeleChatDeployment"
PLURAL = "telechatdeployments"
SINGULAR = "telechatdeployment"
SHORT_NAMES = ["tcd"]

BATCH_KIND = "TeleChatBatchJob"
BATCH_PLURAL = "telechatbatchjobs"
BATCH_SINGULAR = "telechatbatchjob"
BATCH_SHORT_NAMES = ["tcb"]

FIELD_MANAGER = "telechat-operator"
MANAGED_BY = "telechat-operator"

# Labels on every child; the selector labels are immutable once a Deployment exists.
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"

APP_NAME = "telechat"

ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
ANNOTATION_SPEC_HASH = f"{GROUP}/spec-hash"
