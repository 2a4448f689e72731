# Run with: reprun run example-projects/no-mlproject -e report.sh -P who=me
echo "report.sh called with: $*"
echo "run id: ${REPRUN_RUN_ID}"
