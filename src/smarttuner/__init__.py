"""SmartTuner."""
