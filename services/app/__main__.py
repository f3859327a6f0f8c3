"""Run one App-service replica on its own: ``python -m services.app --resource-address ...``."""

from __future__ import annotations

from services.app import standalone_main as main
from services.app._service import AppService

if __name__ == "__main__":
    main(
        "python -m services.app",
        "One App-service replica: the apps' API and the schedulers of the apps it owns.",
        lambda store, settings, resource, replica_id: AppService(
            store, resource=resource, replica_id=replica_id, address=settings.api_address
        ),
    )
