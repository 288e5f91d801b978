"""Triton Python-backend model that checks the license of a licensed repository (``model.py``
imports it; named ``<pipeline>_license``). Every pipeline graph calls it first for each
request; it answers with the certificate in force (``status``: serial, pipeline, expiry) or
an error saying why there is none: missing, expired, other-device, other-pipeline,
bad-signature or revoked.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from ..common import stub_runtime
from ..licensing import license_runtime


class TritonPythonModel:
    """Triton's entry point for a pipeline's licence gate model ``<pipeline>_license``."""

    def initialize(self, args):
        """Open the licence check of this model's version folder (its ``license.json``)."""
        stub_runtime.check_tensor_round_trip(pb_utils)
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.license = license_runtime.LicenseCheck(version_dir)

    def execute(self, requests):
        """Answer each request with the certificate in force, or UNAVAILABLE and why.

        The ``status`` output is JSON with the certificate's serial, pipeline and expiry date.
        """
        responses = []
        for _ in requests:
            try:
                payload = self.license.check()
                status = {k: payload.get(k) for k in ("serial", "pipeline", "expires")}
                out = np.array([json.dumps(status).encode()], dtype=np.object_)
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("status", out)]))
            except license_runtime.LicenseError as exc:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(
                        f"license {exc.reason}: {exc}", pb_utils.TritonError.UNAVAILABLE)))
        return responses
