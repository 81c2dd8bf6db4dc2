"""Stack traces as their runtimes print them, for the trace tests (:mod:`tests.transforms.test_trace_shapes`).

The Go and Python ones were printed by the real runtimes (Go 1.19 with ``GOTRACEBACK=all``,
CPython 3.11), paths rewritten; .NET and Kotlin are not installed here, so theirs are written
in the exact layout those runtimes print (``dotnet`` 8, Kotlin/JVM 1.9)."""

from __future__ import annotations

GO_PANIC = """\
panic: runtime error: index out of range [0] with length 0

goroutine 1 [running]:
main.lookup(...)
	/home/dev/shards/main.go:21
main.main()
	/home/dev/shards/main.go:36 +0x1be

goroutine 18 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 19 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 20 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 21 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 22 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 23 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 24 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 25 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 26 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 27 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 28 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 29 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 30 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 31 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 32 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 33 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 34 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 35 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 36 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 37 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 38 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 39 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 40 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 41 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 42 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 43 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 44 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 45 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 46 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 47 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 48 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 49 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 50 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 51 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 52 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 53 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 54 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 55 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 56 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56

goroutine 57 [chan receive]:
main.worker(0x0?, 0x0?)
	/home/dev/shards/main.go:16 +0x6e
created by main.main
	/home/dev/shards/main.go:29 +0x56
"""


PY_GROUP = """\
  + Exception Group Traceback (most recent call last):
  |   File "/srv/ledger/group.py", line 16, in <module>
  |     asyncio.run(main())
  |   File "/usr/lib/python3.11/asyncio/runners.py", line 190, in run
  |     return runner.run(main)
  |            ^^^^^^^^^^^^^^^^
  |   File "/usr/lib/python3.11/asyncio/runners.py", line 118, in run
  |     return self._loop.run_until_complete(task)
  |            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  |   File "/usr/lib/python3.11/asyncio/base_events.py", line 653, in run_until_complete
  |     return future.result()
  |            ^^^^^^^^^^^^^^^
  |   File "/srv/ledger/group.py", line 12, in main
  |     async with asyncio.TaskGroup() as group:
  |   File "/usr/lib/python3.11/asyncio/taskgroups.py", line 145, in __aexit__
  |     raise me from None
  | ExceptionGroup: unhandled errors in a TaskGroup (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/srv/ledger/group.py", line 8, in fetch
    |     raise TimeoutError(f"shard {shard} did not answer within 5.0 s")
    | TimeoutError: shard 4411 did not answer within 5.0 s
    +---------------- 2 ----------------
    | Traceback (most recent call last):
    |   File "/srv/ledger/group.py", line 6, in fetch
    |     raise ConnectionRefusedError(f"shard {shard} refused the connection on 10.0.4.{shard}:5432")
    | ConnectionRefusedError: shard 4413 refused the connection on 10.0.4.4413:5432
    +------------------------------------
"""


PY_CHAIN = """\
Traceback (most recent call last):
  File "/srv/ledger/chain.py", line 9, in post
    return [parse(e) for e in entries]
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/ledger/chain.py", line 9, in <listcomp>
    return [parse(e) for e in entries]
            ^^^^^^^^
  File "/srv/ledger/chain.py", line 5, in parse
    return int(line.split(";")[2])
               ~~~~~~~~~~~~~~~^^^
IndexError: list index out of range

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/srv/ledger/chain.py", line 15, in close_month
    post(["INV-20930;2024-11-01;120", "INV-20931;2024-11-02"])
  File "/srv/ledger/chain.py", line 11, in post
    raise LedgerError("entry 'INV-20931;2024-11-02' has no amount") from exc
LedgerError: entry 'INV-20931;2024-11-02' has no amount

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/srv/ledger/chain.py", line 19, in <module>
    close_month()
  File "/srv/ledger/chain.py", line 17, in close_month
    raise RuntimeError("month 2024-11 could not be closed")
RuntimeError: month 2024-11 could not be closed
"""


DOTNET_INNER = """\
Unhandled exception. System.InvalidOperationException: Order service failed to start
 ---> System.IO.FileNotFoundException: Could not find file '/srv/shop/config/tenant-4471.json'.
File name: '/srv/shop/config/tenant-4471.json'
   at Microsoft.Win32.SafeHandles.SafeFileHandle.Open(String fullPath, FileMode mode, FileAccess access, FileShare share, FileOptions options, Int64 preallocationSize, UnixFileMode openPermissions, Int64& fileLength, UnixFileMode& filePermissions, Func`4 createOpenException)
   at System.IO.Strategies.OSFileStreamStrategy..ctor(String path, FileMode mode, FileAccess access, FileShare share, FileOptions options, Int64 preallocationSize, Nullable`1 unixCreateMode)
   at System.IO.StreamReader.ValidateArgsAndOpenPath(String path, Encoding encoding, Int32 bufferSize)
   at System.IO.File.ReadAllText(String path)
   at Shop.Config.TenantConfig.Load(String tenant) in /src/Shop/Config/TenantConfig.cs:line 42
   at Shop.Orders.OrderService.Start() in /src/Shop/Orders/OrderService.cs:line 27
   --- End of inner exception stack trace ---
   at Shop.Orders.OrderService.Start() in /src/Shop/Orders/OrderService.cs:line 31
   at Shop.Program.Main(String[] args) in /src/Shop/Program.cs:line 12
"""


DOTNET_AGGREGATE = """\
Unhandled exception. System.AggregateException: One or more errors occurred. (Connection refused (billing.internal:5432)) (The operation was canceled.)
 ---> System.Net.Http.HttpRequestException: Connection refused (billing.internal:5432)
 ---> System.Net.Sockets.SocketException (111): Connection refused
   at System.Net.Sockets.Socket.AwaitableSocketAsyncEventArgs.ThrowException(SocketError error, CancellationToken cancellationToken)
   at System.Net.Sockets.Socket.AwaitableSocketAsyncEventArgs.System.Threading.Tasks.Sources.IValueTaskSource.GetResult(Int16 token)
   at System.Net.Http.HttpConnectionPool.ConnectToTcpHostAsync(String host, Int32 port, HttpRequestMessage initialRequest, Boolean async, CancellationToken cancellationToken)
   --- End of inner exception stack trace ---
   at System.Net.Http.HttpConnectionPool.ConnectToTcpHostAsync(String host, Int32 port, HttpRequestMessage initialRequest, Boolean async, CancellationToken cancellationToken)
   at System.Net.Http.HttpClient.<SendAsync>g__Core|83_0(HttpRequestMessage request, HttpCompletionOption completionOption, CancellationTokenSource cts, Boolean disposeCts, CancellationTokenSource pendingRequestsCts, CancellationToken originalCancellationToken)
   at Shop.Billing.InvoiceClient.PostAsync(Invoice invoice) in /src/Shop/Billing/InvoiceClient.cs:line 58
   at Shop.Billing.MonthEnd.CloseAsync(String month) in /src/Shop/Billing/MonthEnd.cs:line 33
   --- End of inner exception stack trace ---
   at System.Threading.Tasks.Task.ThrowIfExceptional(Boolean includeTaskCanceledExceptions)
   at System.Threading.Tasks.Task.Wait(Int32 millisecondsTimeout, CancellationToken cancellationToken)
   at Shop.Program.Main(String[] args) in /src/Shop/Program.cs:line 19
 ---> (Inner Exception #1) System.Threading.Tasks.TaskCanceledException: The operation was canceled.
   at Shop.Billing.LedgerClient.FlushAsync(String month) in /src/Shop/Billing/LedgerClient.cs:line 71
   at Shop.Billing.MonthEnd.CloseAsync(String month) in /src/Shop/Billing/MonthEnd.cs:line 36<---
"""


def dotnet_stack_overflow(repeats: int = 120) -> str:
    """.NET 8 folds a recursion itself ("Repeat N times:"); older runtimes print every frame."""
    frames = "".join("   at Shop.Catalog.CategoryTree.Walk(Shop.Catalog.Category)\n"
                     "   at Shop.Catalog.CategoryTree.Visit(Shop.Catalog.Category)\n" for _ in range(repeats))
    return ("Stack overflow.\n" + frames + "   at Shop.Catalog.CategoryTree.Build()\n"
            "   at Shop.Program.Main(System.String[])\n")


KOTLIN = """\
Exception in thread "main" java.lang.IllegalStateException: boot aborted after 3 attempts
	at com.acme.shop.BootKt.main(Boot.kt:41)
	at com.acme.shop.BootKt.main(Boot.kt)
Caused by: com.acme.shop.ConfigException: service failed to start
	at com.acme.shop.BootKt.start(Boot.kt:27)
	at com.acme.shop.BootKt.main(Boot.kt:38)
	... 1 more
	Suppressed: java.io.IOException: close failed for /srv/shop/config/tenant-4471.yaml
		at com.acme.shop.config.ConfigReader.close(ConfigReader.kt:31)
		at kotlin.io.CloseableKt.closeFinally(Closeable.kt:56)
		at com.acme.shop.BootKt.start(Boot.kt:25)
		... 2 more
Caused by: java.io.FileNotFoundException: /srv/shop/config/tenant-4471.yaml (No such file or directory)
	at java.base/java.io.FileInputStream.open0(Native Method)
	at java.base/java.io.FileInputStream.open(FileInputStream.java:213)
	at java.base/java.io.FileInputStream.<init>(FileInputStream.java:152)
	at com.acme.shop.config.ConfigReader.<init>(ConfigReader.kt:14)
	at com.acme.shop.BootKt.start(Boot.kt:24)
	... 2 more
"""
