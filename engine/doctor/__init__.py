"""``tidings doctor``: the settings, reachability and DNS checks a shop runs before real mail goes out.

``checks`` runs them and builds the report; ``records`` reads and judges the From domain's
SPF, DKIM and DMARC records; ``probe`` reaches the one-click endpoint at the public URL.
"""

from engine.doctor.checks import Check, Report, Status, run_doctor

__all__ = ["Check", "Report", "Status", "run_doctor"]
