"""Run one Scheduler-service replica on its own: ``python -m services.scheduler ...``."""

from __future__ import annotations

from services.app import standalone_main
from services.scheduler._service import SchedulerService

if __name__ == "__main__":
    standalone_main(
        "python -m services.scheduler",
        "One Scheduler-service replica: recovery of lost nodes' replicas and the routes.",
        lambda store, settings, resource, replica_id: SchedulerService(
            store,
            resource=resource,
            replica_id=replica_id,
            address=settings.api_address,
            performance=settings.accelerator_factors,
        ),
    )
