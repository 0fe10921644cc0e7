//! AWS SSM Parameter Store, as Airflow's `SystemsManagerParameterStoreBackend` reads it. (Skeleton.)
