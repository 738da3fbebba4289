from devstack.stack import main

# Guarded: the stack's forkserver imports this module too (as __mp_main__).
if __name__ == "__main__":
    main()
