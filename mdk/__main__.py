from mdk.cli import main

main()
