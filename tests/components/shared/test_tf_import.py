"""import_tf inside a traced tf.function must not make TensorFlow log the environment (credentials in it)."""

import subprocess
import sys

SCRIPT = """
import logging, os
from mlengine.components.shared.tf import import_tf
tf, _ = import_tf()
logging.getLogger("tensorflow").setLevel(logging.INFO)

@tf.function
def serve(x):  # the exported model's signature calls import_tf while it is traced
    tf_again, _ = import_tf()
    return x + 1

print("result", float(serve(tf.constant(1.0))))
"""


def test_tracing_a_function_that_calls_import_tf_logs_no_environment_value(tmp_path):
    secret = "test-secret-value-0c41e7"
    env = {"PATH": "/usr/bin:/bin", "AWS_SECRET_ACCESS_KEY": secret, "HOME": str(tmp_path)}
    script = tmp_path / "trace.py"  # a file: AutoGraph converts only functions whose source it can read
    script.write_text(SCRIPT, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "result 2.0" in proc.stdout
    assert secret not in proc.stdout + proc.stderr
    assert "_Environ" not in proc.stderr  # AutoGraph's warning about os.environ names the whole mapping
