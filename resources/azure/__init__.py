"""The Azure layer every resource uses: `credentials` (who calls), `errors` (what went wrong and what to
fix), `retry` (azure-core's RetryPolicy and the waits around it), `rest` (an azure-core REST client)."""
