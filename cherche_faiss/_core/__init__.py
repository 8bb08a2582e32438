"""What every layer of the library uses: the component base, devices, validation, progress bars,
checksums, document batches and embedded files. Nothing here imports another sub-package."""
