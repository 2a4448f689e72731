"""What a Warning event of a Job or its pod means for a run that has not started.

`lasting`: a cause that cannot go away by waiting (the service account does not exist, the pod
asks for more than a quota's limit): the run ends at once instead of after
``start_timeout_seconds``. `harmless`: a warning the kubelet gives on pods that then start
(``kube-root-ca.crt`` not registered yet): shown only if the pod does not start.
"""

from __future__ import annotations

import re

_MISSING_ACCOUNT = re.compile(r'serviceaccount "[^"]*" not found')
_QUOTA = re.compile(r"exceeded quota: [^,]+, requested: (?P<requested>\S+), used: \S+, "
                    r"limited: (?P<limited>\S+)")
_UNITS = {"": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
          "Ki": 2.0 ** 10, "Mi": 2.0 ** 20, "Gi": 2.0 ** 30, "Ti": 2.0 ** 40, "Pi": 2.0 ** 50}
_QUANTITY = re.compile(r"^(?P<number>[0-9.]+)(?P<unit>[a-zA-Z]*)$")


def lasting(reason: str, message: str) -> bool:
    """The event names a cause that waiting cannot remove."""
    if reason != "FailedCreate":
        return False
    if _MISSING_ACCOUNT.search(message):
        return True
    found = _QUOTA.search(message)
    if found is None:
        return False
    limited = _amounts(found["limited"])
    return any(amount > limited.get(name, float("inf"))
               for name, amount in _amounts(found["requested"]).items())


def harmless(reason: str, message: str) -> bool:
    """The kubelet's warning on a pod that usually starts a moment later."""
    return reason == "FailedMount" and '"kube-root-ca.crt" not registered' in message


def _amounts(text: str) -> dict[str, float]:
    """``limits.memory=2Gi,limits.cpu=500m`` -> amounts (a quantity not understood is left out)."""
    amounts = {}
    for item in text.rstrip(",").split(","):
        name, _, value = item.partition("=")
        quantity = _QUANTITY.match(value.strip())
        if quantity is not None and quantity["unit"] in _UNITS:
            try:
                amounts[name.strip()] = float(quantity["number"]) * _UNITS[quantity["unit"]]
            except ValueError:
                continue
    return amounts
