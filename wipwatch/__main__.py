from wipwatch.cli import main

main()
