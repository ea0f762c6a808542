# One image for every jobmeter service; docker-compose.yml picks the service with `jobmeter run NAME`.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY events ./events
COPY projections ./projections
COPY services ./services
COPY jobmeter ./jobmeter
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["jobmeter"]
CMD ["run", "all", "--host", "0.0.0.0"]
