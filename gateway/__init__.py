"""The inference gateway: Open Inference Protocol front with an adaptive SWRR picker."""
