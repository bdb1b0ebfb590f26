# shellcheck shell=bash
# scripts/gpu-targets.sh: sourced by gpu-check.sh and gpu-bundle.sh, the one list of what the GPU
# check builds, packs and runs.
# gpu_targets: the GPU tests (the device-to-device migration's and the live migration on one GPU
# included), the CPU twins' own tests (kernels_test: bf16 rounding, the CPU expert backend),
# grace-agent (which the live-migration test starts) and gracectl (bench datapath --backend cuda).
# gpu_tests_regex: the test names among them that the check runs.
# shellcheck disable=SC2034  # used by the scripts that source this one
gpu_targets=(cuda_kernels_test cuda_moe_layer_test cuda_replay_test cuda_live_migration_test
  nccl_transport_test nccl_migration_channel_test device_migration_executor_test kernels_test
  grace-agent gracectl)
gpu_tests_regex='CudaKernelsTest|CudaMoeLayerTest|CudaReplayTest|CudaLiveMigrationTest|NcclTransportTest|NcclMigrationChannelTest|DeviceMigrationExecutorTest|Bf16Test|CpuExpertBackendTest'
